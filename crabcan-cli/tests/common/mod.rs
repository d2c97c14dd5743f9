//! Shared support for the end-to-end tests: the crabcan binary, the test root filesystem,
//! and the checks that a run left the host as it found it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// The crabcan binary under test: `CRABCAN_BIN` (set in the VM) or the one cargo built.
pub fn crabcan_bin() -> PathBuf {
    match std::env::var_os("CRABCAN_BIN") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_BIN_EXE_crabcan")),
    }
}

/// A `Command` for the crabcan binary with a clean, predictable environment.
pub fn crabcan() -> Command {
    let mut c = Command::new(crabcan_bin());
    c.env_remove("RUST_LOG").stdin(Stdio::null());
    c
}

/// Fails the test, saying why, unless it runs as root (CI and the VM run as root).
pub fn require_root() {
    if !nix::unistd::Uid::effective().is_root() {
        panic!("this test needs root (it creates namespaces with a full id map); run it as root");
    }
}

/// The busybox root filesystem the tests run containers in.
///
/// `CRABCAN_TEST_ROOTFS` (set in the VM) or `target/test-rootfs`, brought up to date once
/// per test binary by `cargo xtask rootfs` (idempotent: it builds the tree when missing and
/// refreshes `bin/crabcan-probe` when the sources changed, so a stale probe is never tested).
pub fn rootfs() -> PathBuf {
    static ROOTFS: OnceLock<PathBuf> = OnceLock::new();
    ROOTFS
        .get_or_init(|| {
            if let Some(p) = std::env::var_os("CRABCAN_TEST_ROOTFS") {
                let p = PathBuf::from(p);
                assert!(
                    p.join("bin/busybox").is_file(),
                    "CRABCAN_TEST_ROOTFS={} has no bin/busybox",
                    p.display()
                );
                return p;
            }
            let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
            let dir = workspace.join("target/test-rootfs");
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let status = Command::new(cargo)
                .current_dir(&workspace)
                .args(["xtask", "rootfs"])
                .arg(&dir)
                .status()
                .expect("cannot run cargo xtask rootfs");
            assert!(
                status.success(),
                "cargo xtask rootfs {} failed",
                dir.display()
            );
            dir.canonicalize().expect("test rootfs path")
        })
        .clone()
}

/// Runs crabcan with `args` and returns its output.
pub fn run(args: &[&str]) -> Output {
    crabcan().args(args).output().expect("cannot start crabcan")
}

/// Runs `sh -c SCRIPT` in a container over the test rootfs, with extra crabcan `flags`.
pub fn sh(flags: &[&str], script: &str) -> Output {
    let root = rootfs();
    let mut c = crabcan();
    c.arg("run").arg("--mount").arg(&root).args(flags);
    c.args(["--", "/bin/sh", "-c", script]);
    c.output().expect("cannot start crabcan")
}

/// The text of stdout.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The text of stderr.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The exit code, or a panic naming the signal that killed crabcan itself.
pub fn code(o: &Output) -> i32 {
    o.status
        .code()
        .unwrap_or_else(|| panic!("crabcan was killed: {:?}; stderr: {}", o.status, stderr(o)))
}

/// Asserts the run succeeded, printing its stderr if not.
pub fn assert_ok(o: &Output) {
    assert_eq!(code(o), 0, "crabcan failed; stderr:\n{}", stderr(o));
}

/// What the host looks like, for checking that a run left nothing behind.
#[derive(Debug, PartialEq, Eq)]
pub struct HostState {
    /// Mount points of this process's mount namespace (ids stripped, so order/identity count).
    pub mounts: Vec<String>,
    /// Entries directly under /tmp whose names mention crabcan.
    pub tmp: Vec<String>,
}

/// Reads the parts of the host state a container must not change.
pub fn host_state() -> HostState {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .expect("read mountinfo")
        .lines()
        .map(|l| l.split(' ').skip(3).take(2).collect::<Vec<_>>().join(" "))
        .collect();
    let mut tmp: Vec<String> = std::fs::read_dir("/tmp")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains("crabcan"))
                .collect()
        })
        .unwrap_or_default();
    tmp.sort();
    HostState { mounts, tmp }
}

/// Pids of live processes whose command line mentions `marker`.
pub fn processes_with(marker: &str) -> Vec<i32> {
    let mut out = Vec::new();
    if let Ok(d) = std::fs::read_dir("/proc") {
        for e in d.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline"))
                && String::from_utf8_lossy(&cmd).contains(marker)
            {
                out.push(pid);
            }
        }
    }
    out
}

/// The pid of the container's first process among the children of `parent` (crabcan).
pub fn child_of(parent: u32) -> Option<i32> {
    // crabcan may also have a guardian child (outside the container): the container's
    // process is the child in another PID namespace.
    let ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
    let own = ns(&parent.to_string())?;
    let text = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")).ok()?;
    text.split_whitespace()
        .find(|c| ns(c).is_some_and(|n| n != own))?
        .parse()
        .ok()
}

/// Runs `cmd` to the end with stdin from /dev/null and returns its output; if it is still
/// running after `limit`, kills it and fails the test (a hung container must not hang the
/// suite).
pub fn output_within(cmd: &mut Command, limit: std::time::Duration) -> Output {
    use std::io::Read;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let err = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let start = std::time::Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if start.elapsed() < limit => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{cmd:?} still running after {limit:?}: killed");
            }
            Err(e) => panic!("cannot wait for {cmd:?}: {e}"),
        }
    };
    Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// A scratch directory for one test under target/ (never /tmp), removed on drop.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let base = std::env::var_os("CRABCAN_TEST_SCRATCH")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/e2e"));
        let dir = base.join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn s(&self) -> String {
        self.0.to_string_lossy().into_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// crabcan's children in its own pid namespace (its guardian): the container's first
/// process is the one whose pid has a second level (its own pid namespace).
pub fn guardians_of(crabcan: u32) -> Vec<i32> {
    let mut found = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{crabcan}/task")) else {
        return found;
    };
    for t in tasks.flatten() {
        let kids = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
        for pid in kids
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let levels = status
                .lines()
                .find_map(|l| l.strip_prefix("NSpid:"))
                .map_or(0, |ids| ids.split_whitespace().count());
            if levels == 1 {
                found.push(pid);
            }
        }
    }
    found
}

/// SIGKILLs crabcan's guardian (which would clean up after a SIGKILLed crabcan), so that a
/// test can see what a run leaves when both are gone, as when its process group is killed.
pub fn kill_guardians_of(crabcan: u32) {
    let guardians = guardians_of(crabcan);
    assert!(!guardians.is_empty(), "crabcan {crabcan} has no guardian");
    for g in guardians {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(g),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Cgroup directories whose names start with `prefix`, in every hierarchy, six levels deep.
pub fn cgroups_named(prefix: &str) -> Vec<PathBuf> {
    fn walk(dir: &std::path::Path, depth: usize, prefix: &str, found: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if e.file_name().to_string_lossy().starts_with(prefix) {
                found.push(e.path());
            } else if depth > 1 {
                walk(&e.path(), depth - 1, prefix, found);
            }
        }
    }
    let mut found = Vec::new();
    walk(
        std::path::Path::new("/sys/fs/cgroup"),
        6,
        prefix,
        &mut found,
    );
    found
}

/// The cgroup hierarchy a test makes refuse the container's directory: the last v1 one
/// (made after the clone, in the second step of a creation in two), else the v2 one.
pub fn last_cgroup_hierarchy() -> PathBuf {
    let layout = crabcan_cgroups::Layout::detect().expect("layout");
    match layout.v1.last() {
        Some(h) => h.mount_point.clone(),
        None => layout
            .v2
            .as_ref()
            .expect("a cgroup hierarchy")
            .mount_point
            .clone(),
    }
}

/// Makes `c` run in a mount namespace of its own in which `mount_point` is read-only.
pub fn with_read_only_mount(c: &mut Command, mount_point: &Path) {
    use std::os::unix::process::CommandExt;
    let target = std::ffi::CString::new(mount_point.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: between fork and exec only system calls, on strings made before the fork.
    unsafe {
        c.pre_exec(move || {
            if libc::unshare(libc::CLONE_NEWNS) != 0
                || libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) != 0
                || libc::mount(
                    std::ptr::null(),
                    target.as_ptr(),
                    std::ptr::null(),
                    libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY,
                    std::ptr::null(),
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Receives one descriptor sent with SCM_RIGHTS on `sock`.
pub fn recv_fd(sock: &std::os::unix::net::UnixStream) -> std::os::fd::OwnedFd {
    let mut buf = [0u8; 256];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let msg = nix::sys::socket::recvmsg::<()>(
        std::os::fd::AsRawFd::as_raw_fd(sock),
        &mut iov,
        Some(&mut cmsg),
        nix::sys::socket::MsgFlags::empty(),
    )
    .unwrap();
    for c in msg.cmsgs().unwrap() {
        if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = c {
            assert_eq!(fds.len(), 1, "exactly one descriptor");
            // SAFETY: the kernel just installed this descriptor for us.
            return unsafe { std::os::fd::FromRawFd::from_raw_fd(fds[0]) };
        }
    }
    panic!("no descriptor came over the console socket");
}

/// Runs crabcan with `args` under strace, which SIGKILLs it at its second `mkdirat` in
/// `dir` (the second mount point it makes there), before that call makes anything; strace
/// follows every process crabcan forks to its end. Returns the trace of the `mkdirat`
/// calls in `dir`.
pub fn crabcan_killed_at_second_mkdir_in(dir: &Path, args: &[&std::ffi::OsStr]) -> String {
    let dir = dir.canonicalize().expect("canonical path of the root");
    let trace = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "mkdir-kill-{}-{}.trace",
        std::process::id(),
        args.len()
    ));
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-qq", "-o"])
        .arg(&trace)
        .arg("-P")
        .arg(&dir)
        .args([
            "-e",
            "trace=mkdirat",
            "-e",
            "inject=mkdirat:signal=KILL:when=2",
        ])
        .arg(crabcan_bin())
        .args(args);
    let o = output_within(&mut cmd, std::time::Duration::from_secs(60));
    let text = std::fs::read_to_string(&trace).unwrap_or_else(|e| {
        panic!(
            "no trace from strace (apt install strace): {e}; {}",
            String::from_utf8_lossy(&o.stderr)
        )
    });
    let _ = std::fs::remove_file(&trace);
    text
}

/// Copies the crabcan binary to `dest` (executable) in a `cp` process: written from this
/// multi-threaded test process, the copy's write descriptor could be inherited by a child
/// another test forks at that moment, and running the copy would then fail with ETXTBSY
/// until that child execs.
pub fn copy_crabcan_to(dest: &Path) {
    let status = Command::new("cp")
        .arg(crabcan_bin())
        .arg(dest)
        .status()
        .expect("cannot run cp");
    assert!(
        status.success(),
        "cp of the crabcan binary to {}",
        dest.display()
    );
}
