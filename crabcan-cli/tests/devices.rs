//! End to end: the container's cgroup opens only the standard device nodes (null, zero,
//! full, random, urandom, tty, ptmx, the pty slaves), even through a bind that lets device
//! nodes open (`--add SRC:DST:dev`); on a cgroup v1 devices hierarchy or through an eBPF
//! program on the container's cgroup v2 directory, whichever the host has. And nothing is
//! left in either hierarchy after a run, even after a SIGKILL of crabcan (the next run
//! sweeps).
//!
//! The tests of this file run one at a time: they check for directories of their own
//! containers, which a concurrently running test of this file would create.

mod bounded;
mod common;

use bounded::{LIMIT, output_within, sh, wait_ready, wait_within};
use common::*;
use crabcan_cgroups::{DeviceRule, confine_v2, default_rules, find_cgroup2_mount};
use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The hostname of this file's containers: their cgroups are `crabcan-<it>-<crabcan pid>`.
fn hostname() -> String {
    format!("devrules-{}", std::process::id())
}

/// A directory holding a node the rules refuse (`kmsg`, c 1:11) and one they allow (`null`,
/// c 1:3), both open to everyone, so that only the device rules can refuse the first;
/// removed on drop. It lives in the workspace's target directory, on a filesystem that
/// lets device nodes open.
struct Nodes(PathBuf);

impl Nodes {
    fn new() -> Nodes {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target")
            .join(format!("devnodes-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the node directory");
        let dir = dir.canonicalize().expect("node directory path");
        for (name, minor) in [("kmsg", 11), ("null", 3)] {
            let path = dir.join(name);
            nix::sys::stat::mknod(
                &path,
                nix::sys::stat::SFlag::S_IFCHR,
                nix::sys::stat::Mode::from_bits_truncate(0o666),
                nix::sys::stat::makedev(1, minor),
            )
            .unwrap_or_else(|e| panic!("mknod {}: {e}", path.display()));
            // The umask must not take the bits for others away.
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o666))
                .expect("chmod the node");
        }
        Nodes(dir)
    }

    fn add_flag(&self) -> String {
        format!("{}:/nodes:dev", self.0.display())
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Directories under /sys/fs/cgroup (any hierarchy, five levels deep) whose names mention
/// this file's containers.
fn own_cgroups() -> BTreeSet<PathBuf> {
    fn walk(dir: &Path, depth: usize, marker: &str, found: &mut BTreeSet<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let path = e.path();
            if e.file_name().to_string_lossy().contains(marker) {
                found.insert(path.clone());
            }
            if depth > 1 {
                walk(&path, depth - 1, marker, found);
            }
        }
    }
    let mut found = BTreeSet::new();
    walk(Path::new("/sys/fs/cgroup"), 5, &hostname(), &mut found);
    found
}

/// Waits (bounded) until none of this file's cgroup directories is left, failing if one
/// stays.
fn assert_no_own_cgroup() {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !own_cgroups().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(own_cgroups(), BTreeSet::new(), "device cgroups left behind");
}

/// What the script of [`confinement_script`] prints when the rules hold.
const CONFINED: &str = "null-ok\nkmsg: Operation not permitted\n\
                        dev-null-ok\ndev-zero-ok\ndev-full-ok\ndev-urandom-ok\n";

/// Opens the allowed node and the refused one in /nodes, then the standard /dev nodes.
fn confinement_script() -> &'static str {
    "echo x > /nodes/null && echo null-ok; \
     { : > /nodes/kmsg && echo kmsg-opened; } 2>&1 | sed 's/.*kmsg: /kmsg: /'; \
     echo x > /dev/null && echo dev-null-ok; \
     test \"$(head -c 3 /dev/zero | wc -c)\" = 3 && echo dev-zero-ok; \
     { : > /dev/full; } && echo dev-full-ok; \
     test \"$(head -c 4 /dev/urandom | wc -c)\" = 4 && echo dev-urandom-ok; \
     crabcan-probe ok-terminal"
}

fn check_confined(flags: &[&str]) {
    let nodes = Nodes::new();
    let add = nodes.add_flag();
    let host = hostname();
    let mut all = vec!["--hostname", host.as_str(), "--add", add.as_str()];
    all.extend_from_slice(flags);
    let o = sh(&all, confinement_script());
    assert_ok(&o);
    let out = stdout(&o);
    assert!(
        out.starts_with(CONFINED),
        "with {flags:?}, expected\n{CONFINED}got\n{out}\nstderr:\n{}",
        stderr(&o)
    );
    assert!(
        out.lines()
            .last()
            .is_some_and(|l| l.starts_with("ok: ok-terminal")),
        "a pty must still work: {out}"
    );
    assert_no_own_cgroup();
}

#[test]
fn devices_only_the_standard_nodes_open_in_a_default_container() {
    require_root();
    let _g = serial();
    check_confined(&[]);
}

#[test]
fn devices_only_the_standard_nodes_open_for_host_root_inside() {
    require_root();
    let _g = serial();
    check_confined(&["--userns", "host"]);
}

#[test]
fn devices_rules_are_placed_where_the_host_has_a_controller() {
    require_root();
    let _g = serial();
    let host = hostname();
    let o = output_within(
        crabcan()
            .args(["--debug", "run", "--mount"])
            .arg(rootfs())
            .args(["--hostname", &host, "--", "/bin/true"]),
        LIMIT,
    );
    assert_ok(&o);
    let err = stderr(&o);
    let line = err
        .lines()
        .find(|l| l.contains("device rules applied on"))
        .unwrap_or_else(|| panic!("no device rules applied:\n{err}"));
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    let v2_cgroup = err
        .lines()
        .any(|l| l.contains("cgroup /") && l.ends_with(" created"));
    if v2_cgroup {
        let mount = find_cgroup2_mount(&mountinfo).expect("cgroup2 mount");
        assert!(
            line.contains(&*mount.mount_point.to_string_lossy()),
            "the program goes on the container's cgroup v2 directory: {line}"
        );
    } else {
        let v1 = crabcan_cgroups::v1_devices_mount(&mountinfo)
            .expect("neither a cgroup v2 directory nor a v1 devices hierarchy");
        assert!(
            line.contains(&*v1.mount_point.to_string_lossy()),
            "the rules go in the v1 devices hierarchy: {line}"
        );
    }
    assert_no_own_cgroup();
}

#[test]
fn devices_cgroup_of_a_killed_crabcan_is_swept_by_the_next_run() {
    require_root();
    let _g = serial();
    assert_no_own_cgroup();
    let host = hostname();
    let marker = format!("devkill-{}", std::process::id());
    let mut child = crabcan()
        .arg("run")
        .arg("--mount")
        .arg(rootfs())
        .args(["--hostname", &host, "--", "/bin/sh", "-c"])
        .arg(format!("echo ready; sleep 60; echo {marker}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn crabcan");
    let _lines = wait_ready(&mut child);
    let held = own_cgroups();
    assert!(!held.is_empty(), "the running container has no cgroup");
    // crabcan's guardian would remove the cgroups of a SIGKILLed run itself (run.rs tests
    // that): it goes first, as it would when the whole process group is killed, so that
    // what is left is the next run's to sweep.
    kill_guardians_of(child.id());
    child.kill().expect("SIGKILL crabcan");
    wait_within(&mut child, LIMIT, "crabcan after SIGKILL");
    // The container dies with crabcan; its empty directories stay for the next run.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !processes_with(&marker).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(processes_with(&marker), Vec::<i32>::new(), "container left");
    assert_eq!(own_cgroups(), held, "what a SIGKILLed crabcan leaves");
    let o = sh(&["--hostname", &host], "true");
    assert_ok(&o);
    assert_no_own_cgroup();
}

/// The scratch cgroup of [`devices_program_itself_confines_a_cgroup`], removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Runs `sh -c SCRIPT` on the host inside the cgroup v2 directory `dir`.
fn host_sh_in(dir: &Path, script: &str) -> std::process::Output {
    let procs = std::ffi::CString::new(dir.join("cgroup.procs").as_os_str().as_encoded_bytes())
        .expect("path without NUL");
    let mut c = Command::new("/bin/sh");
    c.args(["-c", script]);
    // SAFETY: the closure only calls open, write and close, which are async-signal-safe.
    unsafe {
        c.pre_exec(move || {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // "0" is the writing process itself.
            let n = libc::write(fd, c"0".as_ptr().cast(), 1);
            let e = std::io::Error::last_os_error();
            libc::close(fd);
            if n != 1 {
                return Err(e);
            }
            Ok(())
        });
    }
    output_within(&mut c, LIMIT)
}

/// The eBPF program alone, on a scratch cgroup under the host's cgroup2 mount (also on a
/// hybrid host, where crabcan itself uses the v1 hierarchy): the kernel's verifier takes it
/// (under a non-GPL license), and it refuses a node outside the rules to a host root shell.
#[test]
fn devices_program_itself_confines_a_cgroup() {
    require_root();
    let _g = serial();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    let mount = find_cgroup2_mount(&mountinfo).expect("this test needs a cgroup2 mount");
    let scratch = Scratch(mount.mount_point.join(format!(
        "crabcan-{}-{}",
        hostname(),
        std::process::id()
    )));
    std::fs::create_dir(&scratch.0).expect("create the scratch cgroup");
    // The verifier is the check on a program: one that returns an unset register is refused
    // in one line that quotes it.
    let bad = [crabcan_cgroups::BpfInsn {
        code: crabcan_cgroups::op::EXIT,
        regs: 0,
        off: 0,
        imm: 0,
    }];
    let e = crabcan_cgroups::load_program(&bad)
        .expect_err("the verifier takes a program that returns nothing")
        .to_string();
    assert!(
        e.starts_with("cannot load the device rules' eBPF program")
            && e.contains("verifier said: "),
        "{e}"
    );
    assert!(!e.contains('\n'), "{e}");
    let script = ": > /dev/null && echo null-ok; \
                  { : > /dev/kmsg && echo kmsg-opened; } 2>&1 | sed 's/.*kmsg: /kmsg: /'";
    let free = host_sh_in(&scratch.0, script);
    assert_eq!(
        stdout(&free),
        "null-ok\nkmsg-opened\n",
        "before the program"
    );
    confine_v2(&default_rules(), &scratch.0).expect("load and attach the program");
    let confined = host_sh_in(&scratch.0, script);
    assert_eq!(
        stdout(&confined),
        "null-ok\nkmsg: Operation not permitted\n",
        "{}",
        stderr(&confined)
    );
    // A later rule overrides: allowing kmsg after the defaults opens it again, in a fresh
    // cgroup (programs attached without flags cannot be replaced).
    drop(scratch);
    let scratch = Scratch(mount.mount_point.join(format!(
        "crabcan-{}-{}",
        hostname(),
        std::process::id()
    )));
    std::fs::create_dir(&scratch.0).expect("create the scratch cgroup");
    let mut rules = default_rules();
    rules.push(DeviceRule::allow_char(1, Some(11)));
    confine_v2(&rules, &scratch.0).expect("load and attach the program");
    let reopened = host_sh_in(&scratch.0, script);
    assert_eq!(stdout(&reopened), "null-ok\nkmsg-opened\n");
}
