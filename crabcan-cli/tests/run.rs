//! End to end: `crabcan run` against the busybox test root, as root and as an ordinary user.

mod bounded;
mod common;

use bounded::{LIMIT, exits_within, output_within, run, sh, wait_ready, wait_within};
use common::*;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// `name` made unique to this test process, so that the processes of other test runs on the
/// same machine never count as this one's.
fn marker(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

/// Runs `f`, then checks that the host's mount table is as it was, that nothing new stays in
/// /tmp, and that no process whose command line holds `marker` survived.
///
/// Other work on the machine (compilers, other test runs) makes short-lived files in /tmp:
/// a new entry counts only if it is still there after a bounded wait.
fn leaves_nothing_behind(marker: &str, f: impl FnOnce()) {
    let (mounts, tmp) = host_state_full();
    f();
    let deadline = Instant::now() + Duration::from_secs(5);
    let new_in_tmp = || -> Vec<String> {
        let (_, now) = host_state_full();
        now.into_iter().filter(|n| !tmp.contains(n)).collect()
    };
    while (!processes_with(marker).is_empty() || !new_in_tmp().is_empty())
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        processes_with(marker),
        Vec::<i32>::new(),
        "processes left behind"
    );
    assert_eq!(host_state_full().0, mounts, "host state changed");
    assert_eq!(new_in_tmp(), Vec::<String>::new(), "left in /tmp");
}

fn host_state_full() -> (HostState, Vec<String>) {
    let mut all: Vec<String> = std::fs::read_dir("/tmp")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    all.sort();
    (host_state(), all)
}

fn host_hostname() -> String {
    nix::unistd::gethostname()
        .expect("gethostname")
        .to_string_lossy()
        .into_owned()
}

fn assert_generated_hostname(h: &str) {
    let parts: Vec<&str> = h.split('-').collect();
    assert_eq!(parts.len(), 3, "hostname {h:?} is not adjective-noun-N");
    assert!(parts[0].bytes().all(|b| b.is_ascii_lowercase()) && !parts[0].is_empty());
    assert!(parts[1].bytes().all(|b| b.is_ascii_lowercase()) && !parts[1].is_empty());
    assert!(parts[2].parse::<u32>().is_ok(), "{h}");
}

#[test]
fn hostname_is_random_and_not_the_hosts() {
    require_root();
    let host = host_hostname();
    let a = sh(&[], "hostname");
    assert_ok(&a);
    let b = sh(&[], "hostname");
    let (a, b) = (stdout(&a).trim().to_string(), stdout(&b).trim().to_string());
    assert_generated_hostname(&a);
    assert_generated_hostname(&b);
    assert_ne!(a, host);
    assert_ne!(a, b, "two containers got the same random hostname");
    assert_eq!(host_hostname(), host, "the host's hostname changed");
}

#[test]
fn hostname_flag_and_environment() {
    require_root();
    let o = sh(
        &["--hostname", "box-1", "-e", "FOO=bar"],
        "hostname; echo $HOSTNAME $FOO $HOME; echo $PATH",
    );
    assert_ok(&o);
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "box-1");
    assert_eq!(lines[1], "box-1 bar /root");
    assert!(
        lines[2].contains("/usr/bin") && lines[2].contains("/bin"),
        "{out}"
    );
}

#[test]
fn init_is_pid_one_and_the_command_sees_only_its_processes() {
    require_root();
    let o = sh(
        &[],
        "echo $$; ls /proc | grep -E '^[0-9]+$' | sort -n | tr '\\n' ' '; echo; cat /proc/1/comm",
    );
    assert_ok(&o);
    let out = stdout(&o);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("2"));
    let pids: Vec<u32> = lines
        .next()
        .unwrap_or("")
        .split_whitespace()
        .map(|p| p.parse().expect("pid"))
        .collect();
    // The init, sh and the commands of the pipeline, numbered from 1 in the new PID
    // namespace.
    let want: Vec<u32> = (1..=pids.len() as u32).collect();
    assert_eq!(pids, want, "container sees other processes");
    // crabcan's init is PID 1: its own binary, which no id of the container can write.
    assert_eq!(lines.next(), Some("crabcan"));
    // With the identity map container root could write it: crabcan (and so the init,
    // which lives as long as the container) runs from a sealed in-memory copy instead.
    assert_runs_from_its_sealed_copy(&["--userns", "host"]);
    // --no-init: the command itself is PID 1.
    let o = sh(&["--no-init"], "echo $$");
    assert_ok(&o);
    assert_eq!(stdout(&o), "1\n");
    assert!(pids.len() <= 6, "container sees other processes: {pids:?}");
}

/// Starts a container with `flags` and checks, from the host, that crabcan's process runs
/// a sealed memfd copy of its binary, not the binary on the host (nor a view that shares
/// its pages, which a rewrite of the file in place would pull from under the container's
/// init).
fn assert_runs_from_its_sealed_copy(flags: &[&str]) {
    let mut c = crabcan();
    c.arg("run").arg("--mount").arg(rootfs()).args(flags);
    c.args(["--", "/bin/sh", "-c", "echo ready; read x"]);
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("cannot start crabcan");
    let lines = bounded::Lines::new(child.stdout.take().unwrap());
    assert_eq!(lines.next_within(LIMIT).unwrap().as_deref(), Some("ready"));
    let exe = std::fs::File::open(format!("/proc/{}/exe", child.id())).unwrap();
    // SAFETY: F_GET_SEALS only reads the seals of a live fd; not a memfd: EINVAL.
    let seals = unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&exe), libc::F_GET_SEALS) };
    let link = std::fs::read_link(format!("/proc/{}/exe", child.id())).unwrap();
    drop(child.stdin.take());
    wait_within(&mut child, LIMIT, "crabcan");
    assert!(
        seals >= 0 && seals & libc::F_SEAL_WRITE != 0,
        "crabcan runs {}, not a write-sealed copy",
        link.display()
    );
}

#[test]
fn root_is_the_rootfs_and_the_old_root_is_gone() {
    require_root();
    let root = rootfs();
    let o = sh(&[], "ls -a /; echo ---; cat /proc/self/mountinfo");
    assert_ok(&o);
    let out = stdout(&o);
    let (ls, mountinfo) = out.split_once("---").expect("separator");
    let inside: std::collections::BTreeSet<&str> = ls
        .split_whitespace()
        .filter(|n| *n != "." && *n != "..")
        .collect();
    let on_host: std::collections::BTreeSet<String> = std::fs::read_dir(&root)
        .expect("read rootfs")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let on_host: std::collections::BTreeSet<&str> = on_host.iter().map(String::as_str).collect();
    assert_eq!(inside, on_host, "/ inside differs from the rootfs");
    let mounts: Vec<&str> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .collect();
    assert!(mounts.contains(&"/"), "{mountinfo}");
    // Nothing of the host's mount table is left: only the container's own mounts.
    for m in &mounts {
        assert!(
            *m == "/" || ["/proc", "/sys", "/dev"].iter().any(|p| m.starts_with(p)),
            "unexpected mount {m} in the container:\n{mountinfo}"
        );
    }
    for m in ["/proc", "/sys", "/dev", "/dev/pts", "/dev/shm", "/dev/null"] {
        assert!(mounts.contains(&m), "{m} not mounted:\n{mountinfo}");
    }
}

#[test]
fn dev_sys_and_loopback() {
    require_root();
    let o = sh(
        &[],
        "echo x > /dev/null && head -c 4 /dev/zero | wc -c && ls /dev/pts/ptmx && \
         test -L /dev/fd && (touch /sys/x 2>/dev/null && echo sys-writable || echo sys-ro) && \
         ip link show lo | grep -q UP && echo lo-up",
    );
    assert_ok(&o);
    let out = stdout(&o);
    assert!(out.contains("4\n"), "{out}");
    assert!(out.contains("sys-ro"), "{out}");
    assert!(out.contains("lo-up"), "{out}");
}

#[test]
fn uid_flag_sets_uid_and_gid() {
    require_root();
    let o = sh(&["-u", "1000"], "id -u; id -g");
    assert_ok(&o);
    assert_eq!(stdout(&o), "1000\n1000\n");
    let o = sh(&[], "id -u");
    assert_eq!(stdout(&o), "0\n");
}

/// File binds in one directory reuse that directory's descriptor; a directory bound over
/// it in between must end that: the next file bind goes onto the bound directory's file,
/// not into the image's directory it covers.
#[test]
fn a_file_bind_after_a_directory_bound_over_its_parent_lands_in_that_directory() {
    require_root();
    let dir = Scratch::new("cover");
    let over = dir.path().join("over");
    std::fs::create_dir(&over).unwrap();
    std::fs::write(over.join("g"), "the bound directory's own\n").unwrap();
    std::fs::write(dir.path().join("f1"), "first\n").unwrap();
    std::fs::write(dir.path().join("f2"), "second\n").unwrap();
    let name = format!("cover-{}", std::process::id());
    let mark = marker("crabcan-cover-test");
    leaves_nothing_behind(&mark, || {
        let f1 = format!("{}/f1:/{name}/f", dir.s());
        let d = format!("{}:/{name}", over.display());
        let f2 = format!("{}/f2:/{name}/g", dir.s());
        let o = sh(
            &["-a", &f1, "-a", &d, "-a", &f2],
            &format!("cat /{name}/g; ls /{name}; : {mark}"),
        );
        assert_ok(&o);
        assert_eq!(stdout(&o), "second\ng\n", "{}", stderr(&o));
    });
    assert_eq!(
        std::fs::read_to_string(over.join("g")).unwrap(),
        "the bound directory's own\n"
    );
    assert!(!rootfs().join(&name).exists(), "/{name} left in the rootfs");
}

#[test]
fn add_mounts_are_visible_and_ro_holds() {
    require_root();
    let dir = Scratch::new("add");
    std::fs::write(dir.path().join("hello"), "from the host\n").unwrap();
    let mark = marker("crabcan-add-test");
    leaves_nothing_behind(&mark, || {
        // Idmapped, the host's root-owned directory is root's inside; plain, it belongs to
        // nobody there, and container root (an unprivileged host id) cannot write it.
        let rw = format!("{}:/data:idmap", dir.s());
        let plain = format!("{}:/plain", dir.s());
        let ro = format!("{}:/srv/ro/deep:ro,idmap", dir.s());
        let o = sh(
            &["-a", &rw, "-a", &plain, "-a", &ro],
            &format!(
                "cat /data/hello; echo new > /data/new && echo rw-ok; \
                 stat -c %u /data/new /plain/hello; \
                 echo y > /plain/y 2>/dev/null && echo plain-broken || echo plain-ok; \
                 echo x > /srv/ro/deep/x 2>/dev/null && echo ro-broken || echo ro-ok; : {mark}"
            ),
        );
        assert_ok(&o);
        let out = stdout(&o);
        assert_eq!(
            out,
            "from the host\nrw-ok\n0\n65534\nplain-ok\nro-ok\n",
            "{}",
            stderr(&o)
        );
    });
    assert_eq!(
        std::fs::read_to_string(dir.path().join("new")).unwrap(),
        "new\n"
    );
    // Written through the idmapped bind, the file has its real owner on the host.
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(dir.path().join("new")).unwrap()),
        0
    );
    assert!(!dir.path().join("x").exists());
    assert!(!dir.path().join("y").exists());
    // DSTs that did not exist in the rootfs were created for the run and removed after it.
    let root = rootfs();
    assert!(!root.join("data").exists(), "/data left in the rootfs");
    assert!(!root.join("plain").exists(), "/plain left in the rootfs");
    assert!(!root.join("srv").exists(), "/srv left in the rootfs");
}

#[test]
fn read_only_root_holds() {
    require_root();
    let o = sh(
        &["--read-only"],
        "touch /newfile 2>/dev/null && echo root-writable || echo root-ro; \
         touch /dev/shm/x && echo shm-ok",
    );
    assert_ok(&o);
    assert_eq!(stdout(&o), "root-ro\nshm-ok\n");
    assert!(!rootfs().join("newfile").exists());
}

#[test]
fn exit_codes() {
    require_root();
    assert_eq!(code(&sh(&[], "exit 0")), 0);
    assert_eq!(code(&sh(&[], "exit 7")), 7);
    let root = rootfs();
    let m = root.to_string_lossy();
    let o = run(&["run", "-m", &m, "--", "/etc/passwd"]);
    assert_eq!(code(&o), 126, "{}", stderr(&o));
    assert!(stderr(&o).contains("/etc/passwd"), "{}", stderr(&o));
    let o = run(&["run", "-m", &m, "--", "no-such-command"]);
    assert_eq!(code(&o), 127);
    let err = stderr(&o);
    assert!(
        err.contains("no-such-command") && err.lines().count() == 1,
        "{err}"
    );
}

#[test]
fn killed_command_exits_128_plus_signal() {
    require_root();
    let mark = marker("crabcan-kill-test");
    leaves_nothing_behind(&mark, || {
        let (mut child, _out) = spawn_ready(&format!("echo ready; sleep 1000; : {mark}"));
        // The container's init is crabcan's only child; SIGKILL it from the host.
        let pid = child_of(child.id()).expect("container process");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let st = wait_within(&mut child, LIMIT, "crabcan after its command was killed");
        assert_eq!(st.code(), Some(137));
    });
}

#[test]
fn signals_are_forwarded() {
    require_root();
    for (sig, name) in [
        (nix::sys::signal::Signal::SIGTERM, "TERM"),
        (nix::sys::signal::Signal::SIGINT, "INT"),
        (nix::sys::signal::Signal::SIGHUP, "HUP"),
    ] {
        let script = format!("trap 'exit 42' {name}; echo ready; while :; do sleep 0.05; done");
        let (mut child, _out) = spawn_ready(&script);
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).unwrap();
        let what = format!("crabcan after a forwarded SIG{name}");
        let st = wait_within(&mut child, LIMIT, &what);
        assert_eq!(st.code(), Some(42), "{name} was not forwarded");
    }
}

/// crabcan takes the signals it forwards even when its caller ignores or blocks them (a
/// shell's background job starts with SIGINT ignored, `nohup` ignores SIGHUP): the command
/// must be able to take them too. A shell cannot trap a signal that was ignored when it
/// started, and a blocked one never arrives, so without crabcan's reset these runs never end.
#[test]
fn signals_are_forwarded_whatever_the_callers_dispositions() {
    use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, signal, sigprocmask};
    require_root();
    for (sig, name, ignored) in [
        (Signal::SIGTERM, "TERM", true),
        (Signal::SIGINT, "INT", true),
        (Signal::SIGHUP, "HUP", true),
        (Signal::SIGQUIT, "QUIT", false),
    ] {
        let script = format!("trap 'exit 42' {name}; echo ready; while :; do sleep 0.05; done");
        let mut c = crabcan();
        c.arg("run")
            .arg("-m")
            .arg(rootfs())
            .args(["--", "/bin/sh", "-c", &script])
            .stdout(Stdio::piped());
        // SAFETY: between fork and exec only signal(2) and sigprocmask(2), which are
        // async-signal-safe, and no allocation.
        unsafe {
            c.pre_exec(move || {
                if ignored {
                    signal(sig, SigHandler::SigIgn)?;
                } else {
                    let mut set = SigSet::empty();
                    set.add(sig);
                    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
                }
                Ok(())
            })
        };
        let mut child = c.spawn().expect("spawn crabcan");
        let _lines = wait_ready(&mut child);
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).unwrap();
        let how = if ignored { "ignored" } else { "blocked" };
        let what = format!("crabcan after a forwarded SIG{name} ({how} by its caller)");
        let st = wait_within(&mut child, LIMIT, &what);
        assert_eq!(
            st.code(),
            Some(42),
            "{name}, {how} by crabcan's caller, did not reach the command's trap"
        );
    }
}

/// Starts `crabcan run` in `root` with the bind `add` (whose destination the root lacks)
/// and a shell that says ready and sleeps, its command line carrying `mark`; `adjust`
/// changes the command first. Returns once the shell is ready.
fn start_holding_a_mount_point(
    root: &Path,
    add: &str,
    mark: &str,
    adjust: impl FnOnce(&mut std::process::Command) -> &mut std::process::Command,
) -> std::process::Child {
    let mut cmd = crabcan();
    cmd.arg("run")
        .arg("-m")
        .arg(root)
        .args(["-a", add, "--", "/bin/sh", "-c"])
        .arg(format!("echo ready; sleep 1000; : {mark}"))
        .stdout(Stdio::piped());
    let mut child = adjust(&mut cmd).spawn().expect("spawn crabcan");
    let _lines = wait_ready(&mut child);
    child
}

#[test]
fn sigkill_of_crabcan_leaves_nothing_behind() {
    require_root();
    let dir = Scratch::new("sigkill");
    // A DST missing from the rootfs: crabcan creates it on the host for the run.
    let made = format!("made-for-sigkill-{}", std::process::id());
    let add = format!("{}:/{made}", dir.s());
    let root = rootfs();
    let mark = marker("crabcan-sigkill-test");
    let mut pid = 0;
    leaves_nothing_behind(&mark, || {
        let mut child = start_holding_a_mount_point(&root, &add, &mark, |c| c);
        assert!(root.join(&made).is_dir(), "the mount point was not created");
        // crabcan and the container's shell both carry the marker.
        assert!(
            processes_with(&mark).len() >= 2,
            "the container is not running"
        );
        pid = child.id();
        assert!(
            !run_cgroups_of(pid).is_empty(),
            "the run has no cgroup to check for"
        );
        // The guardian runs as a batch task (its wake-up at the end of a run must not take
        // crabcan's CPU), without the caller's stdout and stderr (a caller reading them to
        // their end must not wait for it), and cleans up all the same once crabcan is
        // killed. Checked after the kill, so that a failure leaves no run behind. The
        // policy is set before crabcan goes on; the guardian points its output at /dev/null
        // itself, once it first runs, which a busy host may delay: waited for (bounded).
        let null = PathBuf::from("/dev/null");
        let look = || -> Vec<(libc::c_long, Vec<PathBuf>)> {
            guardians_of(pid)
                .into_iter()
                .map(|g| {
                    // SAFETY: sched_getscheduler takes a pid and reads nothing else.
                    let policy = unsafe { libc::syscall(libc::SYS_sched_getscheduler, g) };
                    let out = [1, 2]
                        .iter()
                        .map(|fd| {
                            std::fs::read_link(format!("/proc/{g}/fd/{fd}")).unwrap_or_default()
                        })
                        .collect();
                    (policy, out)
                })
                .collect()
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut seen = look();
        while seen.iter().any(|(_, out)| out.iter().any(|o| *o != null))
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
            seen = look();
        }
        child.kill().unwrap();
        wait_within(&mut child, LIMIT, "the SIGKILLed crabcan");
        assert_eq!(
            seen,
            [(libc::SCHED_BATCH as libc::c_long, vec![null.clone(), null])],
            "crabcan's guardian: its scheduling policy, its stdout and stderr"
        );
    });
    // The guardian removes it once crabcan is gone (leaves_nothing_behind already waited
    // for every process with the marker, the guardian included).
    assert!(
        !root.join(&made).exists(),
        "mount point left in the rootfs after SIGKILL"
    );
    // And the run's cgroup, named after crabcan's pid, in every hierarchy.
    let left = run_cgroups_of(pid);
    assert!(left.is_empty(), "cgroups left after SIGKILL: {left:?}");
}

/// A SIGKILL to crabcan's whole process group (as `timeout -s KILL` sends it) leaves
/// nothing behind either: the guardian, in a session of its own, is not in that group.
#[test]
fn sigkill_of_crabcans_process_group_leaves_nothing_behind() {
    require_root();
    let dir = Scratch::new("sigkillpg");
    let made = format!("made-for-sigkillpg-{}", std::process::id());
    let add = format!("{}:/{made}", dir.s());
    let root = rootfs();
    let mark = marker("crabcan-sigkillpg-test");
    let mut pid = 0;
    leaves_nothing_behind(&mark, || {
        let mut child = start_holding_a_mount_point(&root, &add, &mark, |c| c.process_group(0));
        assert!(root.join(&made).is_dir(), "the mount point was not created");
        pid = child.id();
        assert!(!run_cgroups_of(pid).is_empty(), "the run has no cgroup");
        nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        wait_within(&mut child, LIMIT, "the SIGKILLed crabcan");
    });
    let point_left = root.join(&made).exists();
    let _ = std::fs::remove_dir(root.join(&made));
    assert!(
        !point_left,
        "mount point left in the rootfs after SIGKILL of the group"
    );
    let left = run_cgroups_of(pid);
    assert!(
        left.is_empty(),
        "cgroups left after SIGKILL of the group: {left:?}"
    );
}

/// Host only: strace kills crabcan, which the test VM lacks.
///
/// A crabcan killed while it makes the mount points its root lacks (after the first, before
/// the second) leaves neither: the guardian exists before the first is made, is told of
/// each before it is made, and removes it once crabcan is gone.
#[test]
fn host_only_a_run_killed_while_making_mount_points_leaves_none() {
    require_root();
    let dir = Scratch::new("killprep");
    let names = [1, 2].map(|i| format!("made-killprep-{i}-{}", std::process::id()));
    let adds = names.clone().map(|n| format!("{}:/{n}", dir.s()));
    let root = rootfs();
    let args: Vec<&std::ffi::OsStr> = ["run", "-m"]
        .iter()
        .map(std::ffi::OsStr::new)
        .chain([root.as_os_str()])
        .chain(["-a", &adds[0], "-a", &adds[1], "--", "/bin/true"].map(std::ffi::OsStr::new))
        .collect();
    let trace = crabcan_killed_at_second_mkdir_in(&root, &args);
    let made: Vec<&str> = trace.lines().filter(|l| l.ends_with("= 0")).collect();
    let left: Vec<&String> = names.iter().filter(|n| root.join(n).exists()).collect();
    for n in &left {
        let _ = std::fs::remove_dir(root.join(n));
    }
    assert!(
        made.len() == 1 && trace.contains("killed by SIGKILL"),
        "crabcan was not killed after making one mount point:\n{trace}"
    );
    assert!(
        left.is_empty(),
        "mount points left after the kill: {left:?}"
    );
}

/// The cgroup directories of the `crabcan run` with pid `pid` (`crabcan-<name>@<pid>`), in
/// every hierarchy, five levels deep.
fn run_cgroups_of(pid: u32) -> Vec<PathBuf> {
    fn walk(dir: &Path, depth: usize, suffix: &str, found: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if name.starts_with("crabcan-") && name.ends_with(suffix) {
                found.push(e.path());
            } else if depth > 1 {
                walk(&e.path(), depth - 1, suffix, found);
            }
        }
    }
    let mut found = Vec::new();
    walk(
        Path::new("/sys/fs/cgroup"),
        6,
        &format!("@{pid}"),
        &mut found,
    );
    found
}

#[test]
fn failed_setup_leaves_nothing_behind() {
    require_root();
    let dir = Scratch::new("failed");
    let add = format!("{}:/made-for-the-run", dir.s());
    let mark = marker("crabcan-failed-test");
    leaves_nothing_behind(&mark, || {
        let o = sh(
            &["-a", &add, "-w", "/no/such/workdir"],
            &format!(": {mark}"),
        );
        assert_eq!(code(&o), 125);
        let err = stderr(&o);
        assert!(err.contains("/no/such/workdir"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    });
    assert!(!rootfs().join("made-for-the-run").exists());
}

#[test]
fn bad_input_is_one_line_and_exit_125() {
    let root = rootfs();
    let m = root.to_string_lossy().into_owned();
    let passwd = root.join("etc/passwd").to_string_lossy().into_owned();
    let long = "a".repeat(64);
    // Each case with what its one line must name: the offending value, or the flag.
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec!["run", "-m", "/no/such/dir", "--", "true"],
            vec!["--mount", "'/no/such/dir'"],
        ),
        (
            vec!["run", "-m", "no-such-relative", "--", "true"],
            vec!["--mount", "'no-such-relative'"],
        ),
        (
            vec!["run", "-m", &passwd, "--", "true"],
            vec!["--mount", &passwd, "not a directory"],
        ),
        (vec!["run", "-m", &m, "-c", "   "], vec!["no command given"]),
        (vec!["run", "-m", &m], vec!["no command given"]),
        (
            vec!["run", "-m", &m, "-a", "nocolon", "--", "true"],
            vec!["--add", "'nocolon'", "SRC:DST"],
        ),
        (
            vec!["run", "-m", &m, "-a", "/etc:relative", "--", "true"],
            vec!["--add", "'/etc:relative'", "'relative'"],
        ),
        (
            vec!["run", "-m", &m, "-a", "/etc:/x/../../etc", "--", "true"],
            vec!["--add", "'/x/../../etc'", "'..'"],
        ),
        (
            vec!["run", "-m", &m, "-a", "/no/such/src:/x", "--", "true"],
            vec!["--add", "/no/such/src"],
        ),
        (
            vec!["run", "-m", &m, "-u", "99999999", "--", "true"],
            vec!["--uid", "99999999"],
        ),
        (
            vec!["run", "-m", &m, "--hostname", &long, "--", "true"],
            vec!["--hostname", &long, "64 characters"],
        ),
        (
            vec!["run", "-m", &m, "--hostname", "bad_name!", "--", "true"],
            vec!["--hostname", "'bad_name!'", "'_'"],
        ),
        (
            vec!["run", "-m", &m, "--net", "bridge", "--", "true"],
            vec!["--net", "'bridge'"],
        ),
        (vec!["run", "--bogus-flag"], vec!["'--bogus-flag'"]),
        (
            vec!["run", "-m", &m, "--memory", "12q", "--", "true"],
            vec!["--memory", "'12q'"],
        ),
        (
            vec!["run", "-m", &m, "--pids", "0", "--", "true"],
            vec!["--pids", "'0'"],
        ),
        (
            vec!["run", "-m", &m, "--cpus", "nan", "--", "true"],
            vec!["--cpus", "'nan'"],
        ),
    ];
    for (args, named) in cases {
        leaves_nothing_behind(&marker("crabcan-bad-input"), || {
            let o = run(&args);
            assert_eq!(code(&o), 125, "{args:?}: {}", stderr(&o));
            let err = stderr(&o);
            assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
            assert!(err.starts_with("crabcan: "), "{args:?}: {err}");
            assert!(!err.contains("panicked"), "{args:?}: {err}");
            for n in named {
                assert!(
                    err.contains(n),
                    "{args:?}: the line does not name {n}: {err}"
                );
            }
        });
    }
    // Non-UTF-8 path.
    use std::os::unix::ffi::OsStrExt;
    let o = output_within(
        crabcan()
            .arg("run")
            .arg("-m")
            .arg(std::ffi::OsStr::from_bytes(b"/tmp/\xff"))
            .args(["--", "true"]),
        LIMIT,
    );
    assert_eq!(code(&o), 125);
    let err = stderr(&o);
    assert!(err.contains("UTF-8") && err.contains("--mount"), "{err}");
}

#[test]
fn tutorial_flat_form_and_debug_log() {
    require_root();
    let root = rootfs();
    let o = output_within(
        crabcan().arg("--debug").arg("--mount").arg(&root).args([
            "--uid",
            "0",
            "--command",
            "/bin/echo flat-form-works",
        ]),
        LIMIT,
    );
    assert_ok(&o);
    assert_eq!(stdout(&o), "flat-form-works\n");
    let log = stderr(&o);
    for want in ["hostname", "pivot", "exec", "id maps", "mount plan"] {
        assert!(log.contains(want), "debug log lacks {want}:\n{log}");
    }
    // RFC 3339 timestamps: 2026-11-29T09:02:16.926Z style at the start of each line.
    let first = log.lines().next().unwrap_or("");
    let ts = first.split_whitespace().next().unwrap_or("");
    assert!(
        ts.len() >= 20 && ts.as_bytes()[4] == b'-' && ts.as_bytes()[10] == b'T',
        "not an RFC 3339 timestamp: {first}"
    );
}

#[test]
fn default_root_works_without_an_image() {
    require_root();
    let o = run(&[
        "run",
        "--",
        "/bin/sh",
        "-c",
        "hostname; id -u; ls /; touch /usr/x 2>/dev/null || echo usr-ro",
    ]);
    assert_ok(&o);
    let out = stdout(&o);
    let mut lines = out.lines();
    assert_generated_hostname(lines.next().unwrap_or(""));
    assert_eq!(lines.next(), Some("0"));
    for d in ["usr", "etc", "proc", "dev", "tmp"] {
        assert!(out.lines().any(|l| l == d), "{d} missing from / :\n{out}");
    }
    assert!(out.contains("usr-ro"), "{out}");
    // The host's /etc is bound, but not its secrets: root inside may be root outside.
    let o = run(&[
        "run",
        "--",
        "/bin/sh",
        "-c",
        "cat /etc/shadow /etc/gshadow 2>/dev/null | wc -c; ls -A /etc/ssh 2>/dev/null | wc -l",
    ]);
    assert_ok(&o);
    assert_eq!(
        stdout(&o),
        "0\n0\n",
        "host secrets visible in the scratch root"
    );
}

#[test]
fn host_network_mode() {
    require_root();
    let o = sh(&["--net", "host"], "ls /sys/class/net | wc -l");
    assert_ok(&o);
    let n: usize = stdout(&o).trim().parse().unwrap();
    let host = std::fs::read_dir("/sys/class/net").unwrap().count();
    assert_eq!(n, host, "--net host should see the host's interfaces");
    let o = sh(&[], "ls /sys/class/net");
    assert_eq!(stdout(&o).trim(), "lo");
}

/// Runs crabcan as uid/gid 65534 with no supplementary groups.
fn unprivileged(args: &[&str]) -> std::process::Output {
    let mut c = crabcan();
    c.uid(65534).gid(65534).args(args);
    output_within(&mut c, LIMIT)
}

#[test]
fn runs_without_root() {
    require_root();
    let root = rootfs();
    let m = root.to_string_lossy();
    let mark = marker("crabcan-rootless");
    leaves_nothing_behind(&mark, || {
        let o = unprivileged(&[
            "run",
            "-m",
            &m,
            "--",
            "/bin/sh",
            "-c",
            &format!(
                "id -u; echo $$; hostname; cat /proc/self/uid_map; ls /proc | grep -c -E '^[0-9]+$'; : {mark}"
            ),
        ]);
        assert_ok(&o);
        let out = stdout(&o);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "0");
        assert_eq!(lines[1], "2", "the command runs under crabcan's init");
        assert_generated_hostname(lines[2]);
        let map: Vec<&str> = lines[3].split_whitespace().collect();
        assert_eq!(map, ["0", "65534", "1"]);
        assert_eq!(
            code(&unprivileged(&[
                "run", "-m", &m, "--", "/bin/sh", "-c", "exit 3"
            ])),
            3
        );
        assert_eq!(code(&unprivileged(&["run", "-m", &m, "--", "nope"])), 127);
        let o = unprivileged(&["run", "-m", &m, "-u", "5", "--", "true"]);
        assert_eq!(code(&o), 125);
        assert!(stderr(&o).contains("--uid 5"), "{}", stderr(&o));
        let o = unprivileged(&[
            "run",
            "--",
            "/bin/sh",
            "-c",
            "id -u; ls /usr >/dev/null && echo usr",
        ]);
        assert_ok(&o);
        assert_eq!(stdout(&o), "0\nusr\n");
        let o = unprivileged(&[
            "run",
            "-m",
            &m,
            "--read-only",
            "--",
            "/bin/sh",
            "-c",
            "touch /x 2>/dev/null || echo ro",
        ]);
        assert_ok(&o);
        assert_eq!(stdout(&o), "ro\n");
    });
}

/// Where no pids cgroup can be made (an ordinary user has none delegated here, nor in the
/// VM), the container's processes are capped by RLIMIT_NPROC instead, unless the user set
/// that limit.
#[test]
fn without_a_pids_cgroup_an_ordinary_users_container_is_capped_by_nproc() {
    require_root();
    let m = rootfs().to_string_lossy().into_owned();
    let nproc = |flags: &[&str]| {
        let mut args = vec!["run", "-m", &m];
        args.extend_from_slice(flags);
        args.extend_from_slice(&[
            "--",
            "/bin/sh",
            "-c",
            "cat /proc/self/cgroup; grep 'Max processes' /proc/self/limits",
        ]);
        let o = unprivileged(&args);
        assert_ok(&o);
        let out = stdout(&o);
        assert!(
            !out.contains("/crabcan-"),
            "this test needs a user without a delegated cgroup, and the container got one: {out}"
        );
        let line = out
            .lines()
            .find(|l| l.starts_with("Max processes"))
            .unwrap_or_else(|| panic!("no process limit in {out}"));
        let f: Vec<&str> = line.split_whitespace().collect();
        (f[2].to_string(), f[3].to_string())
    };
    assert_eq!(nproc(&[]), ("4096".into(), "4096".into()));
    assert_eq!(
        nproc(&["--ulimit", "nproc=100:200"]),
        ("100".into(), "200".into())
    );
}

/// Starts `sh -c SCRIPT` in a container over the test rootfs and waits until the script
/// prints its first line, which must be `ready`.
fn spawn_ready(script: &str) -> (std::process::Child, bounded::Lines) {
    let mut child = crabcan()
        .arg("run")
        .arg("-m")
        .arg(rootfs())
        .args(["--", "/bin/sh", "-c", script])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn crabcan");
    let lines = wait_ready(&mut child);
    (child, lines)
}

#[test]
fn many_binds_fit_under_a_low_open_files_limit_and_it_is_restored() {
    require_root();
    let dir = Scratch::new("many");
    std::fs::write(dir.path().join("f"), "x").unwrap();
    let root = rootfs();
    let mut c = crabcan();
    c.arg("run").arg("-m").arg(&root);
    for i in 0..300 {
        c.arg("-a").arg(format!("{}:/many-binds/b{i}:ro", dir.s()));
    }
    c.args(["--", "/bin/sh", "-c", "cat /many-binds/b299/f; ulimit -n"]);
    let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .expect("getrlimit");
    assert!(
        hard >= 400,
        "the hard open-files limit {hard} is too low for this test"
    );
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        c.pre_exec(move || {
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, 256, hard)
                .map_err(std::io::Error::from)
        });
    }
    let o = output_within(&mut c, LIMIT);
    assert_ok(&o);
    assert_eq!(
        stdout(&o),
        "x256\n",
        "the command must see the caller's limit"
    );
    assert!(
        !root.join("many-binds").exists(),
        "mount points left in the rootfs"
    );
}

#[test]
fn command_starts_with_default_signal_dispositions() {
    require_root();
    let o = sh(&[], "grep SigIgn /proc/self/status; yes | head -c1; echo");
    assert_ok(&o);
    let out = stdout(&o);
    let (ignored, rest) = out.split_once('\n').expect("two lines");
    let mask = u64::from_str_radix(ignored.trim_start_matches("SigIgn:").trim(), 16)
        .unwrap_or_else(|_| panic!("bad SigIgn line {ignored:?}"));
    // What the caller ignores passes through, but for SIGPIPE (ignored by crabcan itself)
    // and the signals crabcan forwards (signals_are_forwarded_whatever_the_callers_dispositions).
    assert_eq!(
        mask & (1 << (libc::SIGPIPE - 1)),
        0,
        "SIGPIPE ignored: {ignored}"
    );
    assert_eq!(rest, "y\n");
    assert_eq!(
        stderr(&o),
        "",
        "a pipeline writer saw EPIPE instead of SIGPIPE"
    );
}

#[test]
fn container_cannot_signal_the_callers_process_group() {
    require_root();
    // A sibling in crabcan's process group stands for the caller's shell and pipeline.
    let mut sibling = std::process::Command::new("sleep")
        .arg("30")
        .process_group(0)
        .spawn()
        .expect("spawn sleep");
    let pgid = sibling.id() as i32;
    let o = output_within(
        crabcan()
            .process_group(pgid)
            .arg("run")
            .arg("-m")
            .arg(rootfs())
            .args([
                "--",
                "/bin/sh",
                "-c",
                "trap '' TERM; kill -TERM 0; echo sent",
            ]),
        LIMIT,
    );
    // A SIGTERM sent before crabcan exited may take a moment to end the sibling: give it
    // two seconds (it sleeps 30 of its own accord).
    let ended = exits_within(&mut sibling, Duration::from_secs(2));
    let _ = sibling.kill();
    wait_within(&mut sibling, LIMIT, "the sibling sleep");
    assert_ok(&o);
    assert_eq!(stdout(&o), "sent\n");
    assert_eq!(
        ended, None,
        "the container's kill(0) reached a process of the caller's group"
    );
}

/// A tiny root with symlinks an image may carry: a relative one, and an absolute one to `/`
/// that must resolve to the container's root, never the host's.
fn symlink_root(dir: &Scratch) -> PathBuf {
    let root = dir.path().join("root");
    for d in ["bin", "proc", "sys", "dev", "real"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy(rootfs().join("bin/busybox"), root.join("bin/busybox")).unwrap();
    for applet in ["sh", "cat", "ls"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    std::os::unix::fs::symlink("real", root.join("link")).unwrap();
    std::os::unix::fs::symlink("/", root.join("evil")).unwrap();
    root
}

#[test]
fn symlinks_in_the_root_resolve_inside_it() {
    require_root();
    let dir = Scratch::new("symlinks");
    let root = symlink_root(&dir);
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), "data\n").unwrap();
    // Unique, so that finding it on the host would prove an escape.
    let escape = format!("crabcan-escape-{}", std::process::id());
    let mut cmd = crabcan();
    cmd.arg("run")
        .arg("-m")
        .arg(&root)
        .arg("-a")
        .arg(format!("{}:/link/data:ro", src.display()))
        .arg("-a")
        .arg(format!("{}:/evil/{escape}", src.display()))
        .args(["--", "/bin/sh", "-c"])
        .arg(format!("cat /real/data/f /{escape}/f"));
    let o = output_within(&mut cmd, LIMIT);
    assert_ok(&o);
    assert_eq!(stdout(&o), "data\ndata\n");
    assert!(
        !Path::new("/").join(&escape).exists(),
        "a mount point was created on the host's root through /evil -> /"
    );
    assert!(!root.join(&escape).exists(), "mount point left in the root");
    assert!(
        !root.join("real/data").exists(),
        "mount point left in the root"
    );
}

#[test]
fn nested_binds_never_create_inside_a_host_source() {
    require_root();
    let dir = Scratch::new("nested");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    std::fs::write(b.join("f"), "inner\n").unwrap();
    let outer = format!("{}:/data", a.display());
    let inner = format!("{}:/data/sub", b.display());
    let o = sh(&["-a", &outer, "-a", &inner], "cat /data/sub/f");
    assert_eq!(code(&o), 125, "{}", stderr(&o));
    assert!(stderr(&o).contains("/data/sub"), "{}", stderr(&o));
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    assert!(
        !a.join("sub").exists(),
        "created a directory in the host's bind source"
    );
    // With the mount point there, the nested bind works.
    std::fs::create_dir(a.join("sub")).unwrap();
    let o = sh(&["-a", &outer, "-a", &inner], "cat /data/sub/f");
    assert_ok(&o);
    assert_eq!(stdout(&o), "inner\n");
}
