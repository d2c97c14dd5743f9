//! `crabcan run --name`: the one-shot container recorded in the state directory while it
//! runs, and the OCI commands (`exec`, `state`, `list`, `ps`, `kill`, `delete`) on it.
//! Every test keeps its state root under target/ and removes what it made.

mod bounded;
mod common;
mod engine;

use bounded::{LIMIT, Lines, output_within, wait_within};
use common::*;
use engine::{assert_one_line, reap, subreaper};
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// What a process tells about its confinement: namespaces, hostname, ids, umask, working
/// directory, capabilities, no_new_privs, seccomp, id maps, cgroups, rlimits, environment.
const REPORT: &str = "for k in user mnt pid ipc uts net cgroup; do readlink /proc/self/ns/$k; done; \
    hostname; id; umask; pwd; grep -E '^(Cap|NoNewPrivs|Seccomp)' /proc/self/status; \
    cat /proc/self/uid_map /proc/self/gid_map /proc/self/cgroup /proc/self/limits; \
    rmdir /no-such-dir 2>&1; env | sort";

/// `name` made unique to this test process.
fn unique(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

/// Waits (bounded) until `cond` holds.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within {LIMIT:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A state root of one test, under target/.
struct StateRoot {
    dir: Scratch,
}

impl StateRoot {
    fn new(test: &str) -> StateRoot {
        require_root();
        let _ = rootfs();
        StateRoot {
            dir: Scratch::new(&format!("run-name-{test}")),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// crabcan with this root.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = crabcan();
        c.arg("--root").arg(self.path()).args(args);
        c
    }

    fn out(&self, args: &[&str]) -> Output {
        output_within(&mut self.cmd(args), LIMIT)
    }

    /// `crabcan run --name NAME -m ROOTFS FLAGS -- /bin/sh -c SCRIPT` with stdin and
    /// stdout piped; returns once the script printed `ready`, with what came before.
    fn run(&self, name: &str, flags: &[&str], script: &str) -> Running {
        let mut child = self
            .cmd(&["run", "--name", name, "-m"])
            .arg(rootfs())
            .args(flags)
            .args(["--", "/bin/sh", "-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn crabcan run");
        let lines = Lines::new(child.stdout.take().expect("piped stdout"));
        let mut before = String::new();
        loop {
            match lines.next_within(LIMIT) {
                Ok(Some(l)) if l == "ready" => break,
                Ok(Some(l)) => {
                    before.push_str(&l);
                    before.push('\n');
                }
                other => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("the container did not print ready: {other:?}; it printed {before}");
                }
            }
        }
        // The record is written once the command runs, a moment after it may print.
        let dir = self.path().join(name);
        eventually("the run's record", || dir.join("state.json").is_file());
        Running {
            dir,
            child,
            lines,
            before,
        }
    }

    fn state(&self, name: &str) -> Value {
        let o = self.out(&["state", name]);
        assert_ok(&o);
        serde_json::from_str(&stdout(&o)).expect("state JSON")
    }
}

/// A `crabcan run --name` in the foreground.
struct Running {
    dir: PathBuf,
    child: Child,
    lines: Lines,
    /// What the script printed before `ready`.
    before: String,
}

impl Running {
    /// The container's init: crabcan's child in another pid namespace.
    fn init_pid(&self) -> i32 {
        child_of(self.child.id()).expect("the container's init")
    }

    fn crabcan_pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The cgroup directories its record names.
    fn cgroup_dirs(&self) -> Vec<PathBuf> {
        let s: Value =
            serde_json::from_str(&std::fs::read_to_string(self.dir.join("state.json")).unwrap())
                .unwrap();
        s["cgroup_paths"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| PathBuf::from(p.as_str().unwrap()))
            .collect()
    }

    /// Ends the script (its `read` gets end of file) and waits for crabcan.
    fn end(mut self) -> ExitStatus {
        drop(self.child.stdin.take());
        wait_within(&mut self.child, LIMIT, "crabcan run --name")
    }

    fn wait(mut self) -> ExitStatus {
        wait_within(&mut self.child, LIMIT, "crabcan run --name")
    }
}

/// The script of a named run: the report, then `ready`, then it waits for its stdin.
fn reporting(report: &str) -> String {
    format!("{report}; echo ready; read x || true")
}

/// An exec into a named run gets exactly the confinement of the run's own command, for
/// the default confinement, a custom one (uid, capabilities, a seccomp profile file,
/// rlimits, working directory, environment) and an unconfined one; and its exit status is
/// the exec's.
#[test]
fn an_exec_is_confined_exactly_as_the_runs_command() {
    let root = StateRoot::new("confined");
    let profile = root.dir.path().join("profile.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["rmdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}"#,
    )
    .unwrap();
    let profile = profile.to_string_lossy().into_owned();
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (vec![], vec!["Seccomp:\t2", "NoNewPrivs:\t1", "uid=0(root)"]),
        (
            vec![
                "-u",
                "1000",
                "--cap-drop",
                "ALL",
                "--cap-add",
                "KILL",
                "--seccomp",
                &profile,
                "--ulimit",
                "nofile=256:512",
                "-w",
                "/tmp",
                "-e",
                "FOO=bar",
                "--hostname",
                "named-custom",
            ],
            vec![
                "Seccomp:\t2",
                "Operation not permitted",
                "uid=1000",
                "FOO=bar",
                "named-custom",
                "Max open files            256                  512",
            ],
        ),
        (
            vec!["--seccomp", "unconfined", "--net", "host"],
            vec!["Seccomp:\t0", "No such file or directory"],
        ),
    ];
    for (i, (flags, expected)) in cases.iter().enumerate() {
        let name = unique(&format!("confined{i}"));
        let run = root.run(&name, flags, &reporting(REPORT));
        for e in expected {
            assert!(
                run.before.contains(e),
                "{e:?} not in the run's report:\n{}",
                run.before
            );
        }
        let o = root.out(&["exec", &name, "/bin/sh", "-c", &format!("{REPORT}; exit 7")]);
        assert_eq!(code(&o), 7, "{flags:?}: {}", stderr(&o));
        assert_eq!(
            stdout(&o),
            run.before,
            "{flags:?}: the exec differs from the run"
        );
        // Its namespaces and cgroups, seen from the host too.
        let init = run.init_pid().to_string();
        let o = root.out(&[
            "exec",
            &name,
            "/bin/sh",
            "-c",
            "for k in user mnt pid ipc uts net cgroup; do readlink /proc/self/ns/$k; done",
        ]);
        assert_ok(&o);
        let host: String = ["user", "mnt", "pid", "ipc", "uts", "net", "cgroup"]
            .iter()
            .map(|k| {
                let l = std::fs::read_link(format!("/proc/{init}/ns/{k}")).unwrap();
                format!("{}\n", l.to_string_lossy())
            })
            .collect();
        assert_eq!(stdout(&o), host, "{flags:?}");
        assert_eq!(run.end().code(), Some(0), "{flags:?}");
        assert!(!root.path().join(&name).exists(), "record left: {name}");
    }
}

/// While it runs, `state`, `list` and `ps` show it; a second run with its name fails at
/// once; `kill` reaches it; once it ends its record is gone.
#[test]
fn state_list_ps_kill_and_one_name_at_a_time() {
    let root = StateRoot::new("lifecycle");
    let name = unique("web");
    let run = root.run(&name, &[], "echo ready; read x || true");
    let init = run.init_pid();
    let s = root.state(&name);
    assert_eq!(s["status"], "running", "{s}");
    assert_eq!(s["id"], name.as_str());
    assert_eq!(s["pid"], init, "{s}");
    assert_eq!(s["rootfs"], rootfs().to_string_lossy().as_ref());
    let o = root.out(&["list", "-q"]);
    assert_ok(&o);
    assert!(stdout(&o).lines().any(|l| l == name), "{}", stdout(&o));
    let o = root.out(&["list", "--format", "json"]);
    let all: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == name.as_str() && c["status"] == "running"),
        "{all}"
    );
    let o = root.out(&["ps", "--format", "json", &name]);
    assert_ok(&o);
    let pids: Vec<i32> = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(pids.contains(&init), "{pids:?} lacks the init {init}");
    assert!(pids.len() >= 2, "the init and the command: {pids:?}");
    // The init, crabcan code in the container, holds no descriptor of the state root.
    let held: Vec<PathBuf> = std::fs::read_dir(format!("/proc/{init}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter(|l| l.starts_with(root.path()))
        .collect();
    assert!(held.is_empty(), "the init holds {held:?}");

    // The same name again, while it runs: one line, exit 125, and the first untouched.
    let record = std::fs::read(run.dir.join("state.json")).unwrap();
    let o = output_within(
        root.cmd(&["run", "--name", &name, "-m"])
            .arg(rootfs())
            .args(["--", "/bin/true"]),
        LIMIT,
    );
    assert_eq!(code(&o), 125, "{}", stderr(&o));
    assert_one_line(&o, &format!("container with id {name} already exists"));
    assert_eq!(std::fs::read(run.dir.join("state.json")).unwrap(), record);
    assert_eq!(root.state(&name)["status"], "running");

    let dirs = run.cgroup_dirs();
    assert!(
        !dirs.is_empty() && dirs.iter().all(|d| d.is_dir()),
        "{dirs:?}"
    );
    assert_ok(&root.out(&["kill", &name, "KILL"]));
    assert_eq!(run.wait().code(), Some(137));
    assert!(
        !root.path().join(&name).exists(),
        "record left after the run"
    );
    for d in dirs {
        assert!(!d.exists(), "cgroup {} left", d.display());
    }
    let o = root.out(&["state", &name]);
    assert_eq!(code(&o), 1);
    assert_one_line(&o, "container does not exist");
    let o = root.out(&["exec", &name, "true"]);
    assert_eq!(code(&o), 1);
    assert_one_line(&o, "container does not exist");
    let o = root.out(&["list", "-q"]);
    assert!(!stdout(&o).lines().any(|l| l == name));
}

/// `delete` leaves a running named run alone unless forced; forced, it ends the run and
/// nothing of it is left.
#[test]
fn delete_refuses_a_running_run_unless_forced() {
    let root = StateRoot::new("delete");
    let name = unique("del");
    let run = root.run(&name, &[], "echo ready; read x || true");
    let o = root.out(&["delete", &name]);
    assert_eq!(code(&o), 1);
    assert_one_line(&o, "not stopped: running");
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
    assert_eq!(root.state(&name)["status"], "running");
    let dirs = run.cgroup_dirs();
    assert_ok(&root.out(&["delete", "--force", &name]));
    // All undone when delete returns: the run's crabcan cleaned up, delete waited for it.
    assert!(
        !root.path().join(&name).exists(),
        "record left after delete"
    );
    for d in dirs {
        assert!(!d.exists(), "cgroup {} left", d.display());
    }
    assert_eq!(run.wait().code(), Some(137));
}

/// No exec'd process, foreground or detached, survives the end of the run.
#[test]
fn no_exec_d_process_outlives_the_run() {
    subreaper();
    let root = StateRoot::new("outlive");
    let name = unique("outlive");
    let mark = unique("exec-outlive-mark");
    let run = root.run(&name, &[], "echo ready; read x || true");
    let mut fg = root
        .cmd(&["exec", &name, "/bin/sh", "-c"])
        .arg(format!("echo up; sleep 1000; : {mark}-fg"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let fg_lines = Lines::new(fg.stdout.take().unwrap());
    assert_eq!(fg_lines.next_within(LIMIT).unwrap().as_deref(), Some("up"));
    let pid_file = root.dir.path().join("exec.pid");
    // The detached process keeps the exec's stdio: a file, not a pipe waited on.
    let err_file = root.dir.path().join("exec.err");
    let mut d = root
        .cmd(&["exec", "-d", "--pid-file"])
        .arg(&pid_file)
        .args([&name, "/bin/sh", "-c"])
        .arg(format!("sleep 1001; : {mark}-d"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_file).unwrap())
        .spawn()
        .unwrap();
    let st = wait_within(&mut d, LIMIT, "exec -d");
    assert!(
        st.success(),
        "exec -d: {}",
        std::fs::read_to_string(&err_file).unwrap_or_default()
    );
    let detached: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The foreground exec's crabcan and shell, the detached exec's shell (once the detached
    // exec's own short-lived forks, which share its command line, are gone).
    eventually("both execs run, and nothing else with their mark", || {
        processes_with(&mark).len() == 3
    });
    // The detached one is ours now (a subreaper, as an engine is): the pid namespace's
    // init finishes dying once every process of it is reaped.
    let reaper = std::thread::spawn(move || reap(detached));
    assert_eq!(run.end().code(), Some(0));
    assert_eq!(reaper.join().unwrap(), 137);
    let st = wait_within(&mut fg, LIMIT, "the foreground exec");
    assert_eq!(st.code(), Some(137));
    eventually("the exec'd processes are gone", || {
        processes_with(&mark).is_empty()
    });
    assert!(!root.path().join(&name).exists());
}

/// A SIGKILL of the foreground crabcan: its guardian ends the container and removes the
/// record, the cgroup and the mount points it made; no process is left.
#[test]
fn the_guardian_removes_the_record_after_a_sigkill() {
    let root = StateRoot::new("sigkill");
    let name = unique("sigkill");
    let mark = unique("run-name-sigkill-mark");
    let made = unique("made-for-named-sigkill");
    let add = format!("{}:/{made}", root.dir.s());
    let mounts = host_state().mounts;
    let mut run = root.run(
        &name,
        &["-a", &add],
        &format!("echo ready; read x || true; : {mark}"),
    );
    assert!(
        rootfs().join(&made).is_dir(),
        "the mount point was not made"
    );
    let dirs = run.cgroup_dirs();
    assert!(!dirs.is_empty());
    assert!(processes_with(&mark).len() >= 2, "the container runs");
    run.child.kill().unwrap();
    wait_within(&mut run.child, LIMIT, "the SIGKILLed crabcan");
    eventually("the guardian's cleanup", || {
        processes_with(&mark).is_empty() && !run.dir.exists()
    });
    for d in &dirs {
        eventually(&format!("cgroup {} removed", d.display()), || !d.exists());
    }
    assert!(!rootfs().join(&made).exists(), "mount point left");
    assert_eq!(host_state().mounts, mounts, "mounts left");
    let o = root.out(&["state", &name]);
    assert_one_line(&o, "container does not exist");
}

/// Ctrl-C (SIGINT to crabcan) ends the run, and its record with it.
#[test]
fn ctrl_c_ends_the_run_and_its_record() {
    let root = StateRoot::new("sigint");
    let name = unique("sigint");
    let mut run = root.run(&name, &[], "echo ready; sleep 1000");
    assert!(run.dir.join("state.json").is_file());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(run.crabcan_pid()),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let st = wait_within(&mut run.child, LIMIT, "crabcan after Ctrl-C");
    assert_eq!(st.code(), Some(130));
    assert!(!run.dir.exists(), "record left after Ctrl-C");
    drop(run.lines);
}

/// A run that fails to set up gives its name back; bad names are one line and 125; a
/// run without --name writes nothing; the tutorial's flat form takes --root and --name.
#[test]
fn failures_bad_names_no_name_and_the_flat_form() {
    let root = StateRoot::new("edges");
    let name = unique("failed");
    let o = output_within(
        root.cmd(&["run", "--name", &name, "-w", "/no/such/dir", "-m"])
            .arg(rootfs())
            .args(["--", "/bin/true"]),
        LIMIT,
    );
    assert_eq!(code(&o), 125);
    assert_one_line(&o, "/no/such/dir");
    assert!(
        !root.path().join(&name).exists(),
        "record left after a failure"
    );
    // The name is free again.
    let o = output_within(
        root.cmd(&["run", "--name", &name, "-m"])
            .arg(rootfs())
            .args(["--", "/bin/sh", "-c", "exit 3"]),
        LIMIT,
    );
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(!root.path().join(&name).exists());

    for bad in ["a/b", "..", "", "sp ace", &"x".repeat(1025)] {
        let o = root.out(&["run", "--name", bad, "--", "/bin/true"]);
        assert_eq!(code(&o), 125, "{bad:?}");
        assert_one_line(&o, "invalid --name");
    }

    let o = root.out(&["run", "-m", &rootfs().to_string_lossy(), "--", "/bin/true"]);
    assert_ok(&o);
    let entries = std::fs::read_dir(root.path())
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(entries, 0, "a run without --name wrote state");

    // The tutorial's flat form, --root first.
    let flat = unique("flat");
    let mut child = crabcan()
        .arg("--root")
        .arg(root.path())
        .args(["--name", &flat, "--mount"])
        .arg(rootfs())
        .args(["--command", "/bin/cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let dir = root.path().join(&flat);
    eventually("the flat form's record", || {
        dir.join("state.json").is_file()
    });
    assert_eq!(root.state(&flat)["status"], "running");
    drop(child.stdin.take());
    assert_eq!(
        wait_within(&mut child, LIMIT, "the flat form").code(),
        Some(0)
    );
    assert!(!dir.exists());
}

/// A state root that cannot be made fails the run at once, in one line, before anything
/// runs.
#[test]
fn an_unusable_state_root_fails_the_run() {
    let root = StateRoot::new("badroot");
    let file = root.dir.path().join("not-a-dir");
    std::fs::write(&file, "").unwrap();
    let o = output_within(
        crabcan()
            .arg("--root")
            .arg(&file)
            .args(["run", "--name", "x", "-m"])
            .arg(rootfs())
            .args(["--", "/bin/sh", "-c", "echo ran"]),
        LIMIT,
    );
    assert_eq!(code(&o), 125);
    assert_eq!(stdout(&o), "");
    assert_one_line(&o, &file.to_string_lossy());
}

/// An ordinary user's named run: `state` and `list` reach it, an exec by that user fails in
/// one line naming the namespace it may not open (the container's processes are not
/// dumpable) and never runs the command outside the container; root refuses to act on a
/// record that user could have written (its exec would run what the record says, as root).
#[test]
fn an_ordinary_users_named_run() {
    use std::os::unix::process::CommandExt;
    let root = StateRoot::new("nobody");
    std::fs::create_dir_all(root.path()).unwrap();
    nix::unistd::chown(
        &root.path(),
        Some(nix::unistd::Uid::from_raw(65534)),
        Some(nix::unistd::Gid::from_raw(65534)),
    )
    .unwrap();
    let as_nobody = |args: &[&str]| {
        let mut c = root.cmd(args);
        c.uid(65534).gid(65534);
        c
    };
    for flags in [&[][..], &["--cap-add", "ALL"]] {
        let name = unique("nobody");
        let mut child = as_nobody(&["run", "--name", &name, "-m"])
            .arg(rootfs())
            .args(flags)
            .args(["--", "/bin/sh", "-c", "echo ready; read x || true"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let _lines = bounded::wait_ready(&mut child);
        let dir = root.path().join(&name);
        eventually("the record", || dir.join("state.json").is_file());
        assert_eq!(root.state(&name)["status"], "running");
        let o = output_within(
            &mut as_nobody(&["exec", &name, "/bin/sh", "-c", "echo escaped"]),
            LIMIT,
        );
        assert_eq!(code(&o), 1, "{flags:?}: {}", stderr(&o));
        assert_eq!(stdout(&o), "", "{flags:?}: the command ran");
        assert_one_line(&o, "cannot open the container's namespace");
        for args in [
            &["exec", &name, "/bin/sh", "-c", "echo as-root"][..],
            &["kill", &name, "KILL"],
            &["delete", "--force", &name],
        ] {
            let o = root.out(args);
            assert_eq!(code(&o), 1, "{args:?}: {}", stderr(&o));
            assert_eq!(stdout(&o), "", "{args:?}");
            assert_one_line(&o, "not to be trusted");
        }
        assert_eq!(
            root.state(&name)["status"],
            "running",
            "root's refusals changed it"
        );
        drop(child.stdin.take());
        assert_eq!(
            wait_within(&mut child, LIMIT, "nobody's run").code(),
            Some(0)
        );
        assert!(!dir.exists(), "record left");
    }
}

/// A name reserved by a live run that is still setting up (an owner, no state yet) is
/// left to it: `delete --force` refuses in one line, `state` does not know it yet, and
/// another run cannot take it; once its owner is gone, `delete --force` clears it.
#[test]
fn a_name_being_set_up_is_left_to_its_owner() {
    let root = StateRoot::new("settingup");
    let name = unique("settingup");
    let dir = root.path().join(&name);
    std::fs::create_dir_all(&dir).unwrap();
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let start: u64 = stat[stat.rfind(')').unwrap() + 1..]
        .split_whitespace()
        .nth(19)
        .unwrap()
        .parse()
        .unwrap();
    let owner = serde_json::json!({"pid": std::process::id(), "pid_start": start});
    std::fs::write(dir.join("foreground.json"), owner.to_string()).unwrap();
    let o = root.out(&["delete", "--force", &name]);
    assert_eq!(code(&o), 1);
    assert_one_line(&o, "being set up");
    assert!(dir.is_dir(), "removed under its owner");
    let o = root.out(&["state", &name]);
    assert_one_line(&o, "container does not exist");
    let o = output_within(
        root.cmd(&["run", "--name", &name, "-m"])
            .arg(rootfs())
            .args(["--", "/bin/true"]),
        LIMIT,
    );
    assert_eq!(code(&o), 125);
    assert_one_line(&o, "already exists");
    // An owner that is gone (a start time that is not its own) leaves a stale directory.
    let gone = serde_json::json!({"pid": std::process::id(), "pid_start": start + 1});
    std::fs::write(dir.join("foreground.json"), gone.to_string()).unwrap();
    assert_ok(&root.out(&["delete", "--force", &name]));
    assert!(!dir.exists());
}
