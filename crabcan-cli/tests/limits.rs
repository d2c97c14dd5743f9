//! End to end: the resource limits of `crabcan run` (--memory, --memory-swap, --pids, --cpus,
//! --ulimit), each proved by its effect on a workload in the container, and the cgroup
//! namespace and cleanup that come with them.
//!
//! They run wherever the memory, pids and cpu controllers exist, on cgroup v1, v2 or a
//! hybrid host (this project's development host is hybrid, the test VM pure v2), and fail
//! saying why on a host that lacks one.
//!
//! The tests of this file run one at a time: several check that none of this file's
//! container cgroups is left in any hierarchy, which a concurrent one would contradict.

mod bounded;
mod common;

use bounded::{LIMIT, Lines, drain, exits_within, join_within, output_within, sh, wait_within};
use common::*;
use crabcan_cgroups::{Layout, find_cgroup2_mount};
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Serialises the tests of this file (see the module documentation).
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    // A failed test poisons the lock; the next test still runs alone.
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Fails the test, saying why, unless this host has the memory, pids and cpu controllers
/// in some hierarchy.
fn require_controllers() {
    let layout = Layout::detect().expect("cannot inspect this host's cgroups");
    let missing: Vec<&str> = ["memory", "pids", "cpu"]
        .into_iter()
        .filter(|c| !layout.has(c))
        .collect();
    assert!(
        missing.is_empty(),
        "this test needs the memory, pids and cpu controllers, and this host has no {} ({})",
        missing.join(", "),
        layout.describe()
    );
}

/// Where the cgroup2 hierarchy is mounted, if it is.
fn cgroup2_mount() -> Option<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    find_cgroup2_mount(&mountinfo).map(|m| m.mount_point)
}

/// The mount points of every cgroup hierarchy (v1 and v2), read from mountinfo here.
fn cgroup_mounts() -> Vec<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    mountinfo
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let fstype = right.split_whitespace().next()?;
            let mp = left.split_whitespace().nth(4)?;
            (fstype == "cgroup" || fstype == "cgroup2").then(|| PathBuf::from(mp))
        })
        .collect()
}

/// This file's container cgroups (`crabcan-<hostname>-<pid>`, see [`hostname`]) in every
/// hierarchy, five levels deep. Other crabcan runs on the machine are not this file's
/// business: their names differ.
fn crabcan_cgroups() -> BTreeSet<PathBuf> {
    fn walk(dir: &Path, depth: usize, mine: &str, found: &mut BTreeSet<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let path = e.path();
            if e.file_name().to_string_lossy().starts_with(mine) {
                found.insert(path.clone());
            }
            if depth > 1 {
                walk(&path, depth - 1, mine, found);
            }
        }
    }
    let mine = format!("crabcan-{}@", hostname());
    let mut found = BTreeSet::new();
    for mount in cgroup_mounts() {
        walk(&mount, 5, &mine, &mut found);
    }
    found
}

/// The hostname every container of this file gets, so that its cgroup
/// (`crabcan-<hostname>-<crabcan pid>`) can be told from those of other crabcan runs.
fn hostname() -> String {
    format!("lim-{}", std::process::id())
}

/// `sh` from common, with this file's [`hostname`].
fn run_sh(flags: &[&str], script: &str) -> std::process::Output {
    let host = hostname();
    let mut all = vec!["--hostname", host.as_str()];
    all.extend_from_slice(flags);
    sh(&all, script)
}

/// Runs `f` and checks that it left none of this file's container cgroups behind, in any
/// hierarchy.
///
/// Directories that were there before (a crabcan killed with SIGKILL cannot remove its
/// cgroup) are not this test's doing and are only reported. Another crabcan run on the same
/// machine may own a new one for a moment, so the check waits (bounded) for them to go.
fn leaves_no_cgroup<T>(f: impl FnOnce() -> T) -> T {
    let before = crabcan_cgroups();
    if !before.is_empty() {
        eprintln!("note: crabcan cgroups present before the test: {before:?}");
    }
    let r = f();
    let left = || -> Vec<PathBuf> { crabcan_cgroups().difference(&before).cloned().collect() };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !left().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(left(), Vec::<PathBuf>::new(), "cgroups left behind");
    r
}

/// The pid namespace of process `pid` ("pid:[4026532…]").
fn pid_ns(pid: i32) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/pid"))
        .unwrap_or_else(|e| panic!("read the pid namespace of {pid}: {e}"))
        .to_string_lossy()
        .into_owned()
}

/// Host pids of the live processes in pid namespace `ns`.
fn processes_in(ns: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if std::fs::read_link(format!("/proc/{pid}/ns/pid"))
            .is_ok_and(|l| l.to_string_lossy() == ns)
        {
            out.push(pid);
        }
    }
    out
}

/// Waits (briefly) until no process of pid namespace `ns` is left, failing if one stays.
fn assert_namespace_empty(ns: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !processes_in(ns).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        processes_in(ns),
        Vec::<i32>::new(),
        "processes of the container left behind"
    );
}

/// A container started in the background: its script prints some lines, then `ready`, then
/// keeps running until the test kills it.
struct Running {
    child: Child,
    out: Lines,
    err: Option<JoinHandle<Vec<u8>>>,
    /// What the script printed before `ready`.
    lines: Vec<String>,
    /// The container's init, as a host pid.
    pid: i32,
    done: bool,
}

impl Running {
    fn start(flags: &[&str], script: &str) -> Running {
        Running::start_with(flags, script, |_| {})
    }

    /// [`Running::start`], with `setup` applied to crabcan's command first.
    fn start_with(
        flags: &[&str],
        script: &str,
        setup: impl FnOnce(&mut std::process::Command),
    ) -> Running {
        let root = rootfs();
        let mut cmd = crabcan();
        setup(&mut cmd);
        let mut child = cmd
            .arg("run")
            .arg("--mount")
            .arg(&root)
            .args(["--hostname", &hostname()])
            .args(flags)
            .args(["--", "/bin/sh", "-c", script])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn crabcan");
        let out = Lines::new(child.stdout.take().expect("piped stdout"));
        let err = drain(child.stderr.take());
        let mut lines = Vec::new();
        loop {
            match out.next_within(LIMIT) {
                Ok(Some(line)) if line == "ready" => break,
                Ok(Some(line)) => lines.push(line),
                Ok(None) => {
                    let st = wait_within(&mut child, LIMIT, "crabcan");
                    let err = join_within(err, Duration::from_secs(10), "stderr");
                    let err = String::from_utf8_lossy(&err);
                    panic!(
                        "the container ended ({st}) before it was ready; output {lines:?}; stderr:\n{err}"
                    );
                }
                Err(limit) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("the container did not print ready within {limit:?}; output {lines:?}");
                }
            }
        }
        let Some(pid) = child_of(child.id()) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("crabcan has no child process although the container printed ready");
        };
        Running {
            child,
            out,
            err: Some(err),
            lines,
            pid,
            done: false,
        }
    }

    /// SIGKILLs the container's init and returns crabcan's exit code, stdout rest and stderr.
    fn kill_command(mut self) -> (Option<i32>, String, String) {
        self.done = true;
        kill(Pid::from_raw(self.pid), Signal::SIGKILL).expect("kill the container's init");
        let st = wait_within(
            &mut self.child,
            LIMIT,
            "crabcan after its container was killed",
        );
        let rest = self
            .out
            .rest_within(Duration::from_secs(10))
            .expect("stdout still open after crabcan exited");
        let err = self.err.take().expect("stderr reader");
        let err = join_within(err, Duration::from_secs(10), "stderr");
        (st.code(), rest, String::from_utf8_lossy(&err).into_owned())
    }

    /// The container's directory in the hierarchy of `controller` (v1 or v2), from its
    /// init's /proc/PID/cgroup.
    fn controller_dir(&self, controller: &str) -> PathBuf {
        let layout = Layout::detect().expect("layout");
        let host_view =
            std::fs::read_to_string(format!("/proc/{}/cgroup", self.pid)).expect("read cgroup");
        if let Some(h) = layout.v1_of(controller) {
            let path = host_view
                .lines()
                .find_map(|l| {
                    let mut f = l.splitn(3, ':');
                    let (_, ctls, path) = (f.next()?, f.next()?, f.next()?);
                    ctls.split(',').any(|c| c == controller).then_some(path)
                })
                .unwrap_or_else(|| panic!("no {controller} line in {host_view}"));
            return h.dir_of(path).expect("v1 dir");
        }
        self.cgroup_dir()
    }

    /// The container's directories in every hierarchy (name=systemd aside).
    fn all_dirs(&self) -> Vec<PathBuf> {
        let layout = Layout::detect().expect("layout");
        let mut v: Vec<PathBuf> = layout
            .v1
            .iter()
            .map(|h| self.controller_dir(&h.controllers[0]))
            .collect();
        if layout.v2.is_some() {
            v.push(self.cgroup_dir());
        }
        v
    }

    /// The container's cgroup v2 directory on the host, from its init's /proc/PID/cgroup.
    fn cgroup_dir(&self) -> PathBuf {
        let host_view =
            std::fs::read_to_string(format!("/proc/{}/cgroup", self.pid)).expect("read cgroup");
        let path = v2_path(&host_view).expect("v2 entry").to_string();
        cgroup2_mount().expect("cgroup2 mount").join(&path[1..])
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A failed assertion must not leave the container running (no panic here: this may
        // run while a panic unwinds).
        if !self.done {
            let _ = kill(Pid::from_raw(self.pid), Signal::SIGKILL);
            if exits_within(&mut self.child, LIMIT).is_none() {
                let _ = self.child.kill();
                let _ = exits_within(&mut self.child, LIMIT);
            }
        }
    }
}

/// The path of the cgroup v2 entry ("0::PATH") in the text of a /proc/PID/cgroup.
fn v2_path(proc_cgroup: &str) -> Option<&str> {
    proc_cgroup.lines().find_map(|l| l.strip_prefix("0::"))
}

/// A script that holds about `mib` MiB of anonymous memory in the shell itself (a command
/// substitution keeps all of its output), then prints how many bytes it held.
///
/// The pipeline's own complaints go to /dev/null: when the OOM killer takes the shell, the
/// writers may report the broken pipe, and only crabcan's line is under test.
fn memory_hog(mib: u32) -> String {
    // The shell's own stderr is silenced too: when the OOM killer takes `tr` before the
    // shell, the shell reports "Killed", which is not crabcan's line.
    format!("{{ x=$(head -c {mib}m /dev/zero | tr '\\0' a); echo held ${{#x}}; }} 2>/dev/null")
}

#[test]
fn memory_limit_oom_kills_a_hog() {
    require_root();
    let _serial = serial();
    require_controllers();
    let hog = memory_hog(64);
    leaves_no_cgroup(|| {
        // Memory and swap together capped at 32 MiB: nothing can be swapped out.
        let o = run_sh(&["--memory", "32m", "--memory-swap", "32m"], &hog);
        let err = stderr(&o);
        assert_eq!(code(&o), 137, "the hog was not OOM-killed; stderr:\n{err}");
        assert!(!stdout(&o).contains("held"), "{}", stdout(&o));
        assert_eq!(err.lines().count(), 1, "stderr:\n{err}");
        assert!(err.contains("OOM") && err.contains("--memory"), "{err}");
        assert!(
            err.contains("33554432") || err.to_ascii_lowercase().contains("32m"),
            "the message does not name the 32m limit: {err}"
        );
    });
    leaves_no_cgroup(|| {
        // The same workload fits under a large limit: the limit, not the workload, killed it.
        let o = run_sh(&["--memory", "512m", "--memory-swap", "512m"], &hog);
        assert_ok(&o);
        assert_eq!(stdout(&o), format!("held {}\n", 64 << 20));
        assert!(!stderr(&o).contains("OOM"), "{}", stderr(&o));
    });
}

/// Starts 50 sleepers from a child shell, counts the processes of the container with shell
/// builtins only (no fork needed), prints `ready` and keeps running.
const FORK_LOOP: &str = "sh -c 'for i in $(seq 1 50); do sleep 1000 & done; echo all-started'; \
     n=0; for p in /proc/[0-9]*; do n=$((n+1)); done; echo procs=$n; echo ready; exec sleep 1000";

/// Runs [`FORK_LOOP`] with `flags`; returns the sleepers it started (seen from inside and
/// counted on the host), whether the loop finished, and stderr. Kills the container after and
/// checks that nothing of it is left.
fn fork_loop(flags: &[&str]) -> (usize, bool, String) {
    let run = Running::start(flags, FORK_LOOP);
    let inside: usize = run
        .lines
        .iter()
        .find_map(|l| l.strip_prefix("procs="))
        .unwrap_or_else(|| panic!("no procs= line in {:?}", run.lines))
        .parse()
        .expect("procs count");
    let finished = run.lines.iter().any(|l| l == "all-started");
    let ns = pid_ns(run.pid);
    let on_host = processes_in(&ns).len();
    // crabcan's init, the command (now `sleep`) and the sleepers; nothing exits meanwhile.
    assert_eq!(on_host, inside, "inside and host counts differ");
    let (code, _, err) = run.kill_command();
    assert_eq!(code, Some(137), "{err}");
    assert_namespace_empty(&ns);
    (inside - 2, finished, err)
}

#[test]
fn pids_limit_stops_a_fork_loop() {
    require_root();
    let _serial = serial();
    require_controllers();
    leaves_no_cgroup(|| {
        let (sleepers, finished, err) = fork_loop(&["--pids", "20"]);
        eprintln!("--pids 20: {sleepers} sleepers started; stderr:\n{err}");
        assert!(
            err.contains("can't fork") || err.contains("Resource temporarily unavailable"),
            "no fork failure reported; stderr:\n{err}"
        );
        assert!(
            !finished,
            "the loop started all 50 sleepers under --pids 20"
        );
        assert!(
            (1..20).contains(&sleepers),
            "{sleepers} sleepers under --pids 20"
        );
    });
    leaves_no_cgroup(|| {
        // Without --pids (the default cap is 4096) the same loop starts every sleeper.
        let (sleepers, finished, err) = fork_loop(&[]);
        assert!(finished, "stderr:\n{err}");
        assert_eq!(sleepers, 50, "stderr:\n{err}");
        assert!(!err.contains("fork"), "{err}");
    });
}

/// How long the busy loop runs: long enough that the scheduling noise of a shared machine
/// and the 100 ms cpu.max period average out.
const BUSY_SECONDS: u32 = 3;

/// Busy-loops a child shell for [`BUSY_SECONDS`] of wall time and returns the share of one
/// CPU the loop itself consumed: its own utime+stime over its own lifetime, both read from
/// the container's /proc.
fn busy_share(flags: &[&str]) -> f64 {
    let o = run_sh(
        flags,
        &format!(
            "( while :; do :; done ) & p=$!; sleep {BUSY_SECONDS}; read -r st < /proc/$p/stat; \
             read -r up rest < /proc/uptime; kill $p; echo \"stat $st\"; echo \"uptime $up\""
        ),
    );
    assert_ok(&o);
    let out = stdout(&o);
    let stat = out
        .lines()
        .find_map(|l| l.strip_prefix("stat "))
        .unwrap_or_else(|| panic!("no stat line: {out}"));
    let uptime: f64 = out
        .lines()
        .find_map(|l| l.strip_prefix("uptime "))
        .unwrap_or_else(|| panic!("no uptime line: {out}"))
        .parse()
        .expect("uptime");
    // Fields after "(comm)": state is field 3, utime 14, stime 15, starttime 22.
    let (_, after) = stat.rsplit_once(')').expect("stat has (comm)");
    let f: Vec<&str> = after.split_whitespace().collect();
    let field = |n: usize| -> f64 { f[n - 3].parse().expect("stat field") };
    let tck = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .expect("sysconf")
        .expect("CLK_TCK") as f64;
    let cpu = (field(14) + field(15)) / tck;
    let lifetime = uptime - field(22) / tck;
    assert!(
        lifetime > f64::from(BUSY_SECONDS) * 0.9,
        "the busy loop lived {lifetime} s: {out}"
    );
    cpu / lifetime
}

#[test]
fn cpus_limit_caps_a_busy_loop() {
    require_root();
    let _serial = serial();
    require_controllers();
    // A fifth of a CPU: far enough below what the loop gets unlimited even on a machine
    // shared with other work (two cores here, often busy) for the cap to show.
    let (limited, free) = leaves_no_cgroup(|| (busy_share(&["--cpus", "0.2"]), busy_share(&[])));
    eprintln!("share of a CPU: {limited:.2} under --cpus 0.2, {free:.2} without");
    // Without the cap the same loop, measured the same way, must get clearly more, or this
    // machine is too busy to show anything: fail rather than pass blind.
    assert!(
        free >= 0.35,
        "the unlimited loop got only {free:.2} of a CPU: the machine is too busy to measure the cap"
    );
    // The quota is a ceiling whatever else runs: a fifth of a CPU, plus rounding of the
    // tick-based accounting.
    assert!(
        limited <= 0.28,
        "under --cpus 0.2 the busy loop got {limited:.2} of a CPU (unlimited: {free:.2})"
    );
    assert!(limited >= 0.05, "the capped loop hardly ran: {limited:.2}");
}

/// Checks the text of /proc/self/cgroup read in a container: the v2 entry, and every v1 entry
/// of a hybrid host, is the namespace's root.
fn assert_cgroup_root(text: &str) {
    assert_eq!(
        v2_path(text),
        Some("/"),
        "/proc/self/cgroup inside:\n{text}"
    );
    for l in text.lines() {
        assert!(
            l.ends_with(":/"),
            "not rooted at the container: {l}\n{text}"
        );
    }
}

#[test]
fn cgroup_namespace_is_rooted_at_the_container() {
    require_root();
    let _serial = serial();
    leaves_no_cgroup(|| {
        let o = run_sh(&[], "cat /proc/self/cgroup");
        assert_ok(&o);
        assert_cgroup_root(&stdout(&o));
    });
}

#[test]
fn cgroup_namespace_with_limits_and_sigkill_cleanup() {
    require_root();
    let _serial = serial();
    require_controllers();
    leaves_no_cgroup(|| {
        let run = Running::start(
            &["--memory", "64m", "--pids", "100", "--cpus", "1"],
            "cat /proc/self/cgroup; echo ready; exec sleep 1000",
        );
        assert_cgroup_root(&run.lines.join("\n"));
        // On the host the same process sits in crabcan's cgroup.
        let host_view =
            std::fs::read_to_string(format!("/proc/{}/cgroup", run.pid)).expect("read cgroup");
        let path = v2_path(&host_view).expect("v2 entry").to_string();
        let leaf = path.rsplit('/').next().unwrap_or("");
        assert!(
            leaf.starts_with(&format!("crabcan-{}@", hostname())),
            "the container is not in a crabcan cgroup: {path}"
        );
        // In every hierarchy (on a hybrid host: each v1 one and the v2 one).
        let dirs = run.all_dirs();
        let found = crabcan_cgroups();
        for d in &dirs {
            assert!(
                found.contains(d),
                "{} not found by the cgroup walk",
                d.display()
            );
        }
        let ns = pid_ns(run.pid);
        // A SIGKILL that is not the OOM killer's: exit 137 and no OOM message.
        let (code, _, err) = run.kill_command();
        assert_eq!(code, Some(137), "{err}");
        assert!(
            !err.contains("OOM"),
            "a plain SIGKILL was reported as OOM: {err}"
        );
        assert_namespace_empty(&ns);
        for d in &dirs {
            assert!(!d.exists(), "{} left behind", d.display());
        }
    });
}

/// The host pids listed in a cgroup directory's `cgroup.procs`.
fn procs_of(dir: &Path) -> BTreeSet<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_else(|e| panic!("read {}/cgroup.procs: {e}", dir.display()))
        .lines()
        .map(|l| l.trim().parse().expect("a pid in cgroup.procs"))
        .collect()
}

/// Where the descriptors of process `pid` lead, as the host sees them.
fn fd_targets(pid: i32) -> Vec<PathBuf> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("list the descriptors of {pid}: {e}"))
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .collect()
}

/// The container's processes (its init and the command) sit in the container's own cgroup
/// in every hierarchy, and crabcan itself does not: the container's process enters them by
/// itself, in a user namespace whose ids are not mapped yet, both with the default id range
/// and with the host's ids. Once in, it holds no descriptor into the host's cgroup tree
/// (the init never execs, so nothing would close one).
#[test]
fn every_process_of_the_container_is_in_its_cgroup_in_every_hierarchy() {
    require_root();
    let _serial = serial();
    require_controllers();
    let layout = Layout::detect().expect("cannot inspect this host's cgroups");
    let hierarchies = layout.v1.len() + usize::from(layout.v2.is_some());
    let mounts = cgroup_mounts();
    // The third: clone3 refused, as container engines' default seccomp profiles do (crabcan
    // inside a container), so the process is cloned the classic way, outside its v2
    // directory, and must enter it by itself.
    for (flags, no_clone3) in [
        (&[][..], false),
        (&["--userns", "host"][..], false),
        (&[][..], true),
    ] {
        leaves_no_cgroup(|| {
            let run = Running::start_with(flags, "echo ready; exec sleep 1000", |c| {
                if no_clone3 {
                    refuse_clone3(c);
                }
            });
            let what = format!(
                "{flags:?}{}",
                if no_clone3 { ", clone3 refused" } else { "" }
            );
            let crabcan_pid = run.child.id() as i32;
            let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", run.pid))
                .expect("read the init's children");
            let command: i32 = children
                .split_whitespace()
                .next()
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("the init ({}) has no child", run.pid));
            let leaf = crabcan_cgroups::run_leaf(&hostname(), crabcan_pid as u32);
            let dirs: Vec<PathBuf> = crabcan_cgroups()
                .into_iter()
                .filter(|d| d.file_name().is_some_and(|n| n.to_string_lossy() == leaf))
                .collect();
            assert_eq!(
                dirs.len(),
                hierarchies,
                "{what}: the container's cgroup {leaf} is not in each of the {hierarchies} \
                 hierarchies ({}): {dirs:?}",
                layout.describe()
            );
            for d in &dirs {
                assert_eq!(
                    procs_of(d),
                    BTreeSet::from([run.pid, command]),
                    "{what}: the processes of {} are not the container's init {} and \
                     command {command} (crabcan is {crabcan_pid})",
                    d.display(),
                    run.pid
                );
            }
            for pid in [run.pid, command] {
                for t in fd_targets(pid) {
                    assert!(
                        !mounts.iter().any(|m| t.starts_with(m)),
                        "{what}: process {pid} of the container holds {} of the host's \
                         cgroup tree",
                        t.display()
                    );
                }
            }
            let (code, _, err) = run.kill_command();
            assert_eq!(code, Some(137), "{what}: {err}");
        });
    }
}

/// Makes `cmd` run under a seccomp filter that fails clone3 with ENOSYS (and allows every
/// other call), as the default profiles of docker and podman do.
fn refuse_clone3(cmd: &mut std::process::Command) {
    // Offset 0 of seccomp_data is the call's number.
    let prog = [
        libc::sock_filter {
            code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
            jt: 0,
            jf: 0,
            k: 0,
        },
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: libc::SYS_clone3 as u32,
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ALLOW,
        },
    ];
    // SAFETY: between fork and exec only a prctl on a program that the closure owns.
    unsafe {
        cmd.pre_exec(move || {
            let fprog = libc::sock_fprog {
                len: prog.len() as u16,
                filter: prog.as_ptr().cast_mut(),
            };
            if libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &fprog as *const libc::sock_fprog,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Root's container cgroup is made in two steps around the clone of the container's
/// process: the v2 directory before (the process is cloned into it), every v1 one after
/// its release, while the process makes its mounts. A hierarchy that refuses the directory
/// (here one mounted read-only, in a mount namespace of crabcan's own) fails the run in one
/// line naming it, with 125, and leaves no cgroup behind in any hierarchy, which also means
/// no process of the container is left in one. On a hybrid host the refusing hierarchy is
/// the last v1 one, so the failure comes while the released process sets up; on a v2-only
/// host it is the v2 one, before the clone.
#[test]
fn a_cgroup_hierarchy_that_refuses_the_container_fails_the_run_and_leaves_nothing() {
    let _serial = serial();
    require_root();
    let refusing = last_cgroup_hierarchy();
    let host = hostname();
    let mut c = crabcan();
    c.args(["run", "--hostname", &host, "--mount"])
        .arg(rootfs())
        .args(["--", "/bin/true"]);
    with_read_only_mount(&mut c, &refusing);
    let o = leaves_no_cgroup(|| output_within(&mut c, LIMIT));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(125), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("cannot set up the container's cgroup")
            && err.contains(&*refusing.to_string_lossy())
            && err.contains("Read-only file system"),
        "{err}"
    );
}

/// The command's process of a default run shares the init's memory until it execs (a
/// vfork-style clone). A change of ids makes a process's memory dumpable where the host's
/// `fs.suid_dumpable` is 1, which in shared memory would open the init (crabcan's code and
/// descriptors) to ptrace and /proc from the container: so a command that takes other ids
/// gets memory of its own. The init stays non-dumpable: its /proc files belong to the
/// host's root, not to the container's root. (In this file: the setting is the host's, and
/// the tests here run one at a time.)
#[test]
fn the_init_stays_non_dumpable_when_the_command_changes_ids() {
    let _serial = serial();
    require_root();
    const KNOB: &str = "/proc/sys/fs/suid_dumpable";
    struct Restore(String);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = std::fs::write(KNOB, &self.0);
        }
    }
    let _restore = Restore(std::fs::read_to_string(KNOB).expect("read suid_dumpable"));
    std::fs::write(KNOB, "1").expect("set suid_dumpable to 1");
    let run = Running::start(&["--uid", "1000"], "id -u; echo ready; sleep 30");
    assert_eq!(run.lines, ["1000"], "the command's uid");
    let owner = std::os::unix::fs::MetadataExt::uid(
        &std::fs::metadata(format!("/proc/{}/environ", run.pid)).expect("the init's environ"),
    );
    assert_eq!(
        owner, 0,
        "the init became dumpable (its /proc files are its own)"
    );
}

#[test]
fn default_pids_cap_applies_where_the_controller_exists() {
    require_root();
    let _serial = serial();
    require_controllers();
    leaves_no_cgroup(|| {
        let run = Running::start(&[], "echo ready; exec sleep 1000");
        let host_view =
            std::fs::read_to_string(format!("/proc/{}/cgroup", run.pid)).expect("read cgroup");
        let path = v2_path(&host_view).expect("v2 entry").to_string();
        assert!(
            path.contains(&format!("/crabcan-{}@", hostname())),
            "not in this container's crabcan cgroup: {path}"
        );
        let dir = run.controller_dir("pids");
        let max = std::fs::read_to_string(dir.join("pids.max")).expect("read pids.max");
        assert_eq!(max.trim(), "4096", "{}", dir.display());
        let (code, _, err) = run.kill_command();
        assert_eq!(code, Some(137), "{err}");
        assert!(!dir.exists(), "{} left behind", dir.display());
    });
}

/// A pids limit of one leaves the init no room for the command: one line says so.
#[test]
fn a_pids_limit_that_leaves_no_room_for_the_command_is_named() {
    require_root();
    let _serial = serial();
    require_controllers();
    leaves_no_cgroup(|| {
        let o = run_sh(&["--pids", "1"], "true");
        assert_eq!(code(&o), 125, "{}", stderr(&o));
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains("fork the command from the init") && err.contains("process limit"),
            "{err}"
        );
    });
}

#[test]
fn cgroup_of_a_sigkilled_crabcan_is_swept_by_the_next_run() {
    require_root();
    let _serial = serial();
    require_controllers();
    leaves_no_cgroup(|| {
        let mut run = Running::start(&[], "echo ready; exec sleep 1000");
        let dirs = run.all_dirs();
        // SIGKILL crabcan itself: it cannot clean up; the container dies with it. Its
        // guardian (which would remove the cgroup: run.rs) goes first, so that the sweep is
        // what is tested.
        run.done = true;
        kill_guardians_of(run.child.id());
        kill(Pid::from_raw(run.child.id() as i32), Signal::SIGKILL).expect("kill crabcan");
        wait_within(&mut run.child, LIMIT, "the SIGKILLed crabcan");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while kill(Pid::from_raw(run.pid), None).is_ok() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // Another crabcan on the machine may sweep some first (every run sweeps the shared
        // directories): the behaviour under test too, so only noted. The container's
        // processes are gone, so nothing but a sweep removes them.
        let present = dirs.iter().filter(|d| d.exists()).count();
        if present < dirs.len() {
            eprintln!(
                "note: {} of {} swept by another run first",
                dirs.len() - present,
                dirs.len()
            );
        }
        // The next run notices the owner is gone and removes the empty cgroup everywhere.
        let o = run_sh(&[], "true");
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        for d in &dirs {
            assert!(!d.exists(), "{} was not swept", d.display());
        }
    });
}

#[test]
fn memory_flag_is_applied_wherever_the_controller_is() {
    require_root();
    let _serial = serial();
    require_controllers();
    leaves_no_cgroup(|| {
        let run = Running::start(
            &[
                "--memory",
                "64m",
                "--pids",
                "50",
                "--cpus",
                "0.5",
                "--cpu-weight",
                "200",
            ],
            "echo ran; echo ready; exec sleep 1000",
        );
        assert_eq!(run.lines, ["ran"]);
        // v1 file names where the controller is on v1, v2 names where it is on v2.
        let v1 = |c: &str| Layout::detect().unwrap().v1_of(c).is_some();
        let read = |c: &str, v1_file: &str, v2_file: &str| {
            let f = run
                .controller_dir(c)
                .join(if v1(c) { v1_file } else { v2_file });
            std::fs::read_to_string(&f)
                .unwrap_or_else(|e| panic!("read {}: {e}", f.display()))
                .trim()
                .to_string()
        };
        assert_eq!(
            read("memory", "memory.limit_in_bytes", "memory.max"),
            "67108864"
        );
        assert_eq!(read("pids", "pids.max", "pids.max"), "50");
        if v1("cpu") {
            assert_eq!(read("cpu", "cpu.cfs_quota_us", ""), "50000");
            // cpu weight 200 as shares: 2 + ceil(199 × 262142 / 9999).
            assert_eq!(read("cpu", "cpu.shares", ""), "5220");
        } else {
            assert_eq!(read("cpu", "", "cpu.max"), "50000 100000");
            assert_eq!(read("cpu", "", "cpu.weight"), "200");
        }
        let dirs = run.all_dirs();
        let (code, _, err) = run.kill_command();
        assert_eq!(code, Some(137), "{err}");
        for d in &dirs {
            assert!(!d.exists(), "{} left behind", d.display());
        }
    });
}

/// `paste` with `n` files open at once (it opens them all before reading any).
fn paste(n: usize) -> String {
    format!("paste{}", " /dev/null".repeat(n))
}

fn nofile() -> (u64, u64) {
    getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit")
}

#[test]
fn ulimit_soft_nofile_keeps_the_hard_limit() {
    require_root();
    let _serial = serial();
    let (_, hard) = nofile();
    // stdin, stdout and stderr take three of the 64 descriptors.
    let script = format!(
        "ulimit -Sn; ulimit -Hn; {} && echo fits; {} || echo over-refused",
        paste(61),
        paste(62)
    );
    leaves_no_cgroup(|| {
        let o = run_sh(&["--ulimit", "nofile=64"], &script);
        assert_ok(&o);
        assert_eq!(
            stdout(&o),
            format!("64\n{}\nfits\nover-refused\n", hard.max(64))
        );
        assert!(stderr(&o).contains("Too many open files"), "{}", stderr(&o));
    });
}

#[test]
fn ulimit_soft_and_hard_nofile() {
    require_root();
    let _serial = serial();
    let script = format!(
        "ulimit -Sn; ulimit -Hn; {} && echo fits; {} || echo over-refused; \
         ulimit -Sn 64 && {} && echo raised-to-hard; \
         ulimit -Sn 65 2>/dev/null || echo soft-above-hard-refused; \
         ulimit -Hn 65 2>/dev/null || echo hard-raise-refused",
        paste(29),
        paste(30),
        paste(61)
    );
    leaves_no_cgroup(|| {
        let o = run_sh(&["--ulimit", "nofile=32:64"], &script);
        assert_ok(&o);
        assert_eq!(
            stdout(&o),
            "32\n64\nfits\nover-refused\nraised-to-hard\nsoft-above-hard-refused\nhard-raise-refused\n"
        );
        assert!(stderr(&o).contains("Too many open files"), "{}", stderr(&o));
    });
}

#[test]
fn rlimits_are_inherited_without_ulimit() {
    require_root();
    let _serial = serial();
    let (soft, hard) = nofile();
    let show = |v: u64| {
        if v == nix::sys::resource::RLIM_INFINITY {
            "unlimited".to_string()
        } else {
            v.to_string()
        }
    };
    leaves_no_cgroup(|| {
        let o = run_sh(&[], "ulimit -Sn; ulimit -Hn");
        assert_ok(&o);
        assert_eq!(stdout(&o), format!("{}\n{}\n", show(soft), show(hard)));

        // A distinctive soft limit set for crabcan alone comes through as well.
        let distinct = if hard >= 777 { 777 } else { hard / 2 };
        let root = rootfs();
        let mut c = crabcan();
        c.arg("run")
            .arg("--mount")
            .arg(&root)
            .args(["--hostname", &hostname()])
            .args(["--", "/bin/sh", "-c", "ulimit -Sn; ulimit -Hn"]);
        // SAFETY: setrlimit is async-signal-safe and touches no memory of the parent.
        unsafe {
            c.pre_exec(move || {
                setrlimit(Resource::RLIMIT_NOFILE, distinct, hard).map_err(std::io::Error::from)
            });
        }
        let o = output_within(&mut c, LIMIT);
        assert_ok(&o);
        assert_eq!(stdout(&o), format!("{distinct}\n{}\n", show(hard)));
    });
}

/// Runs `crabcan run` as uid/gid 65534 with `flags`.
fn unprivileged_sh(flags: &[&str], script: &str) -> std::process::Output {
    let root = rootfs();
    let mut c = crabcan();
    c.uid(65534)
        .gid(65534)
        .arg("run")
        .arg("--mount")
        .arg(&root)
        .args(["--hostname", &hostname()])
        .args(flags)
        .args(["--", "/bin/sh", "-c", script]);
    output_within(&mut c, LIMIT)
}

#[test]
fn without_root_an_explicit_limit_that_cannot_apply_fails() {
    require_root();
    let _serial = serial();
    require_controllers();
    leaves_no_cgroup(|| {
        // No cgroup is delegated to uid 65534: the asked limit is an error, never a warning,
        // and the command does not run.
        for flags in [&["--pids", "50"][..], &["--memory", "64m"][..]] {
            let o = unprivileged_sh(flags, "echo ran");
            let err = stderr(&o);
            assert_eq!(code(&o), 125, "{flags:?}: {err}");
            assert_eq!(err.lines().count(), 1, "{err}");
            assert!(err.contains("cgroup"), "{err}");
            assert_eq!(stdout(&o), "", "the command ran although {flags:?} failed");
        }
        // Without limits crabcan's own defaults are skipped quietly and the command runs.
        let o = unprivileged_sh(&[], "echo ran");
        assert_ok(&o);
        assert_eq!(stdout(&o), "ran\n");
        assert_eq!(stderr(&o), "");
    });
}
