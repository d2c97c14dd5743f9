//! Tests of the plan, and a privileged test that applies it in a child process.

use super::*;

fn cfg(add: &[&str], drop: &[&str], uid: u32, seccomp: bool) -> SecurityConfig {
    let list = |v: &[&str]| parse_cap_list(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    SecurityConfig {
        capabilities: Capabilities::for_uid(
            kept_set(&list(add).unwrap(), &list(drop).unwrap()),
            uid,
        ),
        no_new_privs: true,
        seccomp: if seccomp {
            Seccomp::Profile(Profile::crabcan_default())
        } else {
            Seccomp::Unconfined
        },
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn root_keeps_the_defaults_in_effective() {
    let p = plan(&SecurityConfig::default()).unwrap();
    assert_eq!(p.bounding(), CapSet::of(DEFAULT_CAPS));
    assert_eq!(p.effective(), p.bounding());
    assert_eq!(p.capabilities().permitted, p.bounding());
    assert_eq!(p.capabilities().inheritable, CapSet::EMPTY);
    assert_eq!(p.capabilities().ambient, CapSet::EMPTY);
    assert!(p.no_new_privs());
    assert!(p.seccomp_program().is_some());
}

#[test]
fn non_root_gets_no_capabilities_but_keeps_the_bounding_set() {
    let p = plan(&cfg(&["NET_ADMIN"], &[], 1000, false)).unwrap();
    assert_eq!(p.effective(), CapSet::EMPTY);
    assert_eq!(p.capabilities().permitted, CapSet::EMPTY);
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

#[cfg(target_arch = "x86_64")]
#[test]
fn a_profile_that_cannot_compile_fails_the_plan_naming_its_path() {
    let bad = profile::parse(
        r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
            {"names":["read"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":3,"op":"SCMP_CMP_GE"}]},
            {"names":["read"],"action":"SCMP_ACT_KILL","args":[{"index":0,"value":5,"op":"SCMP_CMP_LE"}]}]}"#,
    )
    .unwrap();
    let mut c = cfg(&[], &[], 0, true);
    c.seccomp = Seccomp::Profile(bad);
    let e = plan(&c).unwrap_err();
    assert_eq!(e.kind(), crabcan_errors::Kind::Usage);
    assert!(e.to_string().starts_with("syscalls["), "{e}");
}

#[cfg(target_arch = "x86_64")]
#[test]
fn describe_is_one_line_with_the_essentials() {
    let p = plan(&cfg(&["ALL"], &["SYS_ADMIN"], 1000, true)).unwrap();
    let d = describe(&p);
    assert!(!d.contains('\n'));
    assert!(d.contains("effective none"), "{d}");
    assert!(d.contains("seccomp a profile ("), "{d}");
    assert!(d.contains("no_new_privs on"), "{d}");
}

#[cfg(not(target_arch = "x86_64"))]
#[test]
fn other_arches_refuse_the_filter_clearly() {
    let e = plan(&cfg(&[], &[], 0, true)).unwrap_err();
    assert!(e.to_string().contains("x86"));
    assert!(plan(&cfg(&[], &[], 0, false)).is_ok());
}

#[test]
fn with_no_new_privs_step_one_loads_nothing() {
    // No filter in this thread is the proof: a loaded one could not be removed, and this
    // harness thread goes on running. (The other order is the "no-nnp" probe below.)
    let p = plan(&cfg(&[], &[], 0, true)).unwrap();
    apply_seccomp_before_cap_drop(&p).unwrap();
    let status = status_now();
    assert_eq!(status_field(&status, "Seccomp"), "0");
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
    run_probe("no-nnp");
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
    // no-nnp: a non-root user without no_new_privs, whose filter must go in while the
    // process is still root with CAP_SYS_ADMIN (after the drop the kernel refuses it).
    let no_nnp = mode == "no-nnp";
    let user = mode == "user" || no_nnp;
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
    let mut c = cfg(add, &lacking, if user { 65534 } else { 0 }, true);
    c.no_new_privs = !no_nnp;
    let p = plan(&c).unwrap();

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

    apply_seccomp_before_cap_drop(&p).unwrap();
    let filters = if no_nnp { "1" } else { "0" };
    assert_eq!(status_field(&status_now(), "Seccomp_filters"), filters);
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
    assert_eq!(
        status_field(&status, "NoNewPrivs"),
        if no_nnp { "0" } else { "1" }
    );
    assert_eq!(status_field(&status, "Seccomp"), "2");
    // One filter, whichever step loaded it.
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
        kernel.seccomp(&empty, 0),
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
    if no_nnp {
        // Neither no_new_privs nor CAP_SYS_ADMIN: the kernel takes no more filters, which
        // is why the first one had to go in before the drop.
        assert_eq!(
            kernel.seccomp(&one, 0),
            Err(Errno::EACCES),
            "seccomp without nnp"
        );
    } else {
        assert_eq!(kernel.prctl(&one), Ok(()), "prctl(allow all)");
        assert_eq!(status_field(&status_now(), "Seccomp_filters"), "2");
        assert_eq!(kernel.seccomp(&one, 0), Ok(()), "seccomp(allow all)");
        assert_eq!(status_field(&status_now(), "Seccomp_filters"), "3");
    }

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
        let r = libc::syscall(libc::SYS_ioctl, fd, libc::TIOCSTI, &ch);
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
        // An x32 call (the ABI is not in the default profile) kills the caller.
        let child = libc::fork();
        assert!(child >= 0, "fork: {}", Errno::last());
        if child == 0 {
            libc::syscall(0x4000_0000 | libc::SYS_getpid);
            libc::_exit(0);
        }
        let mut st = 0;
        assert_eq!(libc::waitpid(child, &mut st, 0), child);
        assert!(
            libc::WIFSIGNALED(st) && libc::WTERMSIG(st) == libc::SIGSYS,
            "x32 getpid: status {st:#x}"
        );
        let r = libc::syscall(libc::SYS_keyctl, 0, 0, 0, 0, 0);
        assert_eq!(errno_of(r), eperm, "keyctl");
        let r = libc::syscall(libc::SYS_bpf, 0, 0, 0);
        assert_eq!(errno_of(r), eperm, "bpf");
        let r = libc::syscall(libc::SYS_ptrace, libc::PTRACE_TRACEME, 0, 0, 0);
        assert_eq!(errno_of(r), eperm, "ptrace");

        assert!(libc::syscall(libc::SYS_personality, 0xffff_ffffu32) >= 0);
        let r = libc::syscall(libc::SYS_personality, libc::ADDR_NO_RANDOMIZE);
        assert_eq!(
            errno_of(r),
            Some(libc::ENOSYS),
            "personality(ADDR_NO_RANDOMIZE)"
        );

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
