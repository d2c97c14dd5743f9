//! Tests of the plan, and a privileged test that applies it in a child process.

use super::*;

fn cfg(add: &[&str], drop: &[&str], uid: u32, seccomp: bool) -> SecurityConfig {
    SecurityConfig {
        cap_add: add.iter().map(|s| s.to_string()).collect(),
        cap_drop: drop.iter().map(|s| s.to_string()).collect(),
        uid,
        seccomp,
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn root_keeps_the_defaults_in_effective() {
    let p = plan(&SecurityConfig::default()).unwrap();
    assert_eq!(p.bounding(), CapSet::of(DEFAULT_CAPS));
    assert_eq!(p.effective(), p.bounding());
    assert!(p.seccomp_program().is_some());
}

#[test]
fn non_root_gets_no_capabilities_but_keeps_the_bounding_set() {
    let p = plan(&cfg(&["NET_ADMIN"], &[], 1000, false)).unwrap();
    assert_eq!(p.effective(), CapSet::EMPTY);
    assert!(p.bounding().contains(Capability::NetAdmin));
}

#[test]
fn unconfined_has_no_program_and_says_so() {
    let p = plan(&cfg(&[], &["ALL"], 0, false)).unwrap();
    assert!(p.seccomp_program().is_none());
    let d = describe(&p);
    assert!(d.contains("seccomp unconfined"), "{d}");
    assert!(d.contains("bounding none"), "{d}");
    assert!(!d.contains('\n'));
}

#[test]
fn bad_names_fail_the_plan() {
    let e = plan(&cfg(&[], &["CAP_NOPE"], 0, true)).unwrap_err();
    assert_eq!(e.kind(), crabcan_errors::Kind::Usage);
    assert!(e.to_string().contains("CAP_NOPE"));
}

#[cfg(target_arch = "x86_64")]
#[test]
fn describe_is_one_line_with_the_essentials() {
    let p = plan(&cfg(&["ALL"], &["SYS_ADMIN"], 1000, true)).unwrap();
    let d = describe(&p);
    assert!(!d.contains('\n'));
    assert!(d.contains("effective none (uid 1000)"), "{d}");
    assert!(d.contains("x86_64 allow list"), "{d}");
    assert!(d.contains("no_new_privs on"), "{d}");
}

#[cfg(not(target_arch = "x86_64"))]
#[test]
fn other_arches_refuse_the_filter_clearly() {
    let e = plan(&cfg(&[], &[], 0, true)).unwrap_err();
    assert!(e.to_string().contains("x86_64"));
    assert!(plan(&cfg(&[], &[], 0, false)).is_ok());
}

#[test]
fn counts_name_the_table() {
    // (allowed, allowed after an argument check, refused with EPERM), written out.
    assert_eq!(seccomp::counts(), (295, 15, 58));
}

// -------------------------------------------------------------------------------------
// Privileged: apply everything in a fresh process (the test binary re-executed), never in
// the multi-threaded harness itself.

const PROBE_ENV: &str = "CRABCAN_SECURITY_PROBE";
const PROBE_TEST: &str = "tests::apply_confines_a_real_process";
/// Long enough for a loaded machine (a run takes well under a second), short enough that a
/// filter that kills a thread, which makes the child hang, fails the test before a mutation
/// tester's own timeout (20 s at least) takes it for a hang.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(8);

/// Runs `cmd` to the end, or kills it after `limit`; (status, stdout, stderr).
fn run_within(
    mut cmd: std::process::Command,
    limit: std::time::Duration,
) -> std::result::Result<(std::process::ExitStatus, String, String), String> {
    use std::io::Read;
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = child.stdout.take().map(|p| drain(Box::new(p)));
    let err = child.stderr.take().map(|p| drain(Box::new(p)));
    let start = std::time::Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if start.elapsed() < limit => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{cmd:?} still running after {limit:?}: killed"));
            }
            Err(e) => return Err(format!("cannot wait for {cmd:?}: {e}")),
        }
    };
    let text = |h: Option<std::thread::JoinHandle<String>>| {
        h.map(|h| h.join().unwrap_or_default()).unwrap_or_default()
    };
    Ok((status, text(out), text(err)))
}

/// Runs the probe in a child process as `mode` and checks it passed.
fn run_probe(mode: &str) {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = std::process::Command::new(exe);
    cmd.args([PROBE_TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(PROBE_ENV, mode);
    let (status, stdout, stderr) = run_within(cmd, PROBE_TIMEOUT).unwrap();
    assert!(
        status.success() && stdout.contains(&format!("PROBE OK {mode}")),
        "probe ({mode}) failed: {status}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
}

/// In the harness: re-executes this very test as root, as a non-root user and as root
/// with every capability, each in its own process. In that process: applies the plan and
/// checks its effects.
#[test]
fn apply_confines_a_real_process() {
    if let Ok(mode) = std::env::var(PROBE_ENV) {
        probe(&mode);
        println!("PROBE OK {mode}");
        return;
    }
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root: it drops bounding capabilities and installs the seccomp \
         filter in a child process (run `cargo test -p crabcan-security` as root or in the VM)"
    );
    run_probe("root");
    run_probe("user");
    run_probe("all");
}

#[test]
fn a_hanging_child_is_killed_at_the_deadline() {
    let mut cmd = std::process::Command::new("/bin/sh");
    cmd.args(["-c", "echo started; exec sleep 30"]);
    let t = std::time::Instant::now();
    let e = run_within(cmd, std::time::Duration::from_millis(300)).unwrap_err();
    assert!(e.contains("killed"), "{e}");
    assert!(t.elapsed() < std::time::Duration::from_secs(10));
    let mut cmd = std::process::Command::new("/bin/sh");
    cmd.args(["-c", "echo out; echo err >&2; exit 3"]);
    let (st, out, err) = run_within(cmd, PROBE_TIMEOUT).unwrap();
    assert_eq!(
        (st.code(), out.as_str(), err.as_str()),
        (Some(3), "out\n", "err\n")
    );
}

fn status_field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':')))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no {key} in status"))
}

fn hex(status: &str, key: &str) -> u64 {
    u64::from_str_radix(&status_field(status, key), 16).unwrap()
}

fn errno_of(r: libc::c_long) -> Option<i32> {
    (r < 0).then(|| Errno::last() as i32)
}

fn status_now() -> String {
    std::fs::read_to_string("/proc/thread-self/status").unwrap()
}

/// Raises CHOWN in the inheritable and ambient sets, so that clearing them is visible.
fn raise_ambient_chown() {
    let (eff, prm, _) = caps::current_sets().unwrap();
    let mut hdr = [0x2008_0522u32, 0]; // _LINUX_CAPABILITY_VERSION_3, this thread
    let data: [u32; 6] = [
        eff as u32,
        prm as u32,
        1,
        (eff >> 32) as u32,
        (prm >> 32) as u32,
        0,
    ];
    // SAFETY: a version-3 header and two data structs (effective, permitted, inheritable).
    let r = unsafe { libc::syscall(libc::SYS_capset, hdr.as_mut_ptr(), data.as_ptr()) };
    assert_eq!(r, 0, "capset: {}", Errno::last());
    // SAFETY: integer arguments only.
    let r = unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_RAISE, 0, 0, 0) };
    assert_eq!(r, 0, "raise ambient CHOWN: {}", Errno::last());
    assert_eq!(hex(&status_now(), "CapAmb"), 1);
    assert_eq!(hex(&status_now(), "CapInh"), 1);
}

fn probe(mode: &str) {
    let user = mode == "user";
    let all = mode == "all";
    let add: &[&str] = if all { &["ALL"] } else { &[] };
    // "ALL" less what this process does not hold itself (a sandboxed root may lack some).
    let held = hex(&status_now(), "CapPrm");
    let lacking: Vec<String> = KNOWN_CAPS
        .iter()
        .filter(|c| all && held & (1 << c.number()) == 0)
        .map(|c| c.name())
        .collect();
    let lacking: Vec<&str> = lacking.iter().map(String::as_str).collect();
    let p = plan(&cfg(add, &lacking, if user { 65534 } else { 0 }, true)).unwrap();

    // The kernel's highest capability, asked one by one, is the one procfs names.
    let proc_last =
        caps::parse_last_cap(&std::fs::read_to_string("/proc/sys/kernel/cap_last_cap").unwrap());
    assert_eq!(caps::last_cap_by(caps::bounding_knows), proc_last);
    assert_eq!(caps::kernel_last_cap().ok(), proc_last);
    // A file to chmod later, made while still root (only the root probe uses it).
    // Under target/, not /tmp, and removed on drop even when an assertion fails.
    struct Removed(std::path::PathBuf);
    impl Drop for Removed {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target")
        .join(format!("security-probe-{}", std::process::id()));
    let _cleanup = Removed(file.clone());
    if !user {
        std::fs::write(&file, b"").unwrap();
    }
    let path = std::ffi::CString::new(file.as_os_str().as_encoded_bytes()).unwrap();

    apply_bounding(&p).unwrap();
    raise_ambient_chown();
    caps::clear_ambient().unwrap();
    assert_eq!(
        hex(&status_now(), "CapAmb"),
        0,
        "ambient set after clear_ambient"
    );
    raise_ambient_chown();
    if user {
        // Raw syscalls change only this thread, which is the one being confined; the libc
        // wrappers would change every thread of the harness.
        // SAFETY: integer arguments only; a null list with size 0 clears the groups.
        unsafe {
            assert_eq!(
                libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<u32>()),
                0
            );
            assert_eq!(libc::syscall(libc::SYS_setresgid, 65534, 65534, 65534), 0);
            assert_eq!(libc::syscall(libc::SYS_setresuid, 65534, 65534, 65534), 0);
        }
    }
    apply_final(&p).unwrap();

    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
    let mask = caps::valid_mask(caps::kernel_last_cap().unwrap());
    // The default set written out (the usual 14 without SETFCAP), or every capability.
    let kept = if all { held & mask } else { 0x2804_25fb & mask };
    let eff = if user { 0 } else { kept };
    assert_eq!(hex(&status, "CapBnd"), kept, "bounding set");
    assert_eq!(hex(&status, "CapEff"), eff, "effective set");
    assert_eq!(hex(&status, "CapPrm"), eff, "permitted set");
    assert_eq!(hex(&status, "CapInh"), 0, "inheritable set");
    assert_eq!(hex(&status, "CapAmb"), 0, "ambient set");
    assert_eq!(status_field(&status, "NoNewPrivs"), "1");
    assert_eq!(status_field(&status, "Seccomp"), "2");

    assert_eq!(status_field(&status, "Seccomp_filters"), "1");

    // The real system calls behind `install`: a malformed program is refused, and the
    // prctl path stacks a second (allow-all) filter.
    let empty = libc::sock_fprog {
        len: 0,
        filter: std::ptr::null_mut(),
    };
    let mut kernel = seccomp::KernelCalls;
    use seccomp::FilterCalls;
    assert_eq!(
        kernel.seccomp(&empty),
        Err(Errno::EINVAL),
        "seccomp(empty program)"
    );
    assert_eq!(
        kernel.prctl(&empty),
        Err(Errno::EINVAL),
        "prctl(empty program)"
    );
    let mut allow_all = [libc::sock_filter {
        code: 0x06,
        jt: 0,
        jf: 0,
        k: 0x7fff_0000,
    }];
    let one = libc::sock_fprog {
        len: 1,
        filter: allow_all.as_mut_ptr(),
    };
    assert_eq!(kernel.prctl(&one), Ok(()), "prctl(allow all)");
    assert_eq!(status_field(&status_now(), "Seccomp_filters"), "2");
    assert_eq!(kernel.seccomp(&one), Ok(()), "seccomp(allow all)");
    assert_eq!(status_field(&status_now(), "Seccomp_filters"), "3");

    let eperm = Some(libc::EPERM);
    // SAFETY: each call gets valid pointers or none; a refused call touches nothing.
    unsafe {
        assert_eq!(
            libc::syscall(libc::SYS_getpid),
            i64::from(std::process::id())
        );

        let tmpfs = c"tmpfs";
        let mnt = libc::syscall(
            libc::SYS_mount,
            tmpfs.as_ptr(),
            path.as_ptr(),
            tmpfs.as_ptr(),
            0,
            0,
        );
        assert_eq!(errno_of(mnt), eperm, "mount");
        // Without the filter a thread of a multi-threaded process gets EINVAL here.
        let r = libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUSER);
        assert_eq!(errno_of(r), eperm, "unshare(CLONE_NEWUSER)");
        let r = libc::syscall(libc::SYS_unshare, libc::CLONE_NEWNET);
        assert_eq!(errno_of(r), eperm, "unshare(CLONE_NEWNET)");
        let r = libc::syscall(libc::SYS_setns, 0, 0);
        assert_eq!(errno_of(r), eperm, "setns");

        // A pipe is no terminal: allowed terminal ioctls fail with ENOTTY, refused ones
        // with EPERM before the driver sees them.
        let mut fds = [-1; 2];
        assert_eq!(libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC), 0, "pipe2");
        let fd = fds[0];
        let ch = b'x';
        let r = libc::syscall(libc::SYS_ioctl, fd, u64::from(seccomp::TIOCSTI), &ch);
        assert_eq!(errno_of(r), eperm, "ioctl TIOCSTI");
        let mut ws = std::mem::zeroed::<libc::winsize>();
        let r = libc::syscall(libc::SYS_ioctl, fd, libc::TIOCGWINSZ, &mut ws);
        assert_eq!(errno_of(r), Some(libc::ENOTTY), "ioctl TIOCGWINSZ");
        libc::close(fds[0]);
        libc::close(fds[1]);

        let r = libc::syscall(libc::SYS_socket, 40, libc::SOCK_STREAM, 0);
        assert_eq!(errno_of(r), eperm, "socket(AF_VSOCK)");
        let r = libc::syscall(
            libc::SYS_socket,
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
        );
        assert!(r >= 0, "socket(AF_UNIX): {}", Errno::last());
        libc::close(r as libc::c_int);
        let r = libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            c"/".as_ptr(),
            std::ptr::null::<u8>(),
            0,
        );
        assert_eq!(errno_of(r), Some(libc::ENOSYS), "openat2");
        let r = libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0);
        assert_eq!(errno_of(r), Some(libc::ENOSYS), "clone3");
        let r = libc::syscall(seccomp::X32_SYSCALL_BIT as libc::c_long | libc::SYS_getpid);
        assert_eq!(errno_of(r), eperm, "x32 getpid");
        let r = libc::syscall(libc::SYS_keyctl, 0, 0, 0, 0, 0);
        assert_eq!(errno_of(r), eperm, "keyctl");
        let r = libc::syscall(libc::SYS_bpf, 0, 0, 0);
        assert_eq!(errno_of(r), eperm, "bpf");
        let r = libc::syscall(libc::SYS_ptrace, libc::PTRACE_TRACEME, 0, 0, 0);
        assert_eq!(errno_of(r), eperm, "ptrace");

        assert!(libc::syscall(libc::SYS_personality, 0xffff_ffffu32) >= 0);
        let r = libc::syscall(libc::SYS_personality, libc::ADDR_NO_RANDOMIZE);
        assert_eq!(errno_of(r), eperm, "personality(ADDR_NO_RANDOMIZE)");

        if !user {
            let created = std::ffi::CString::new(format!("{}-new", file.display())).unwrap();
            let r = libc::syscall(
                libc::SYS_open,
                created.as_ptr(),
                libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC,
                0o4755,
            );
            assert_eq!(errno_of(r), eperm, "open(O_CREAT, 04755)");
            let r = libc::syscall(libc::SYS_mknod, created.as_ptr(), libc::S_IFREG | 0o2755, 0);
            assert_eq!(errno_of(r), eperm, "mknod(S_IFREG|02755)");
            let r = libc::syscall(libc::SYS_chmod, path.as_ptr(), 0o4755);
            assert_eq!(errno_of(r), eperm, "chmod 04755");
            let r = libc::syscall(libc::SYS_chmod, path.as_ptr(), 0o755);
            assert_eq!(errno_of(r), None, "chmod 0755");
        }
    }
    if !user {
        let _ = std::fs::remove_file(&file);
        // Only there if the filter let the creation through (the test failed then).
        let _ = std::fs::remove_file(format!("{}-new", file.display()));
    }
}
