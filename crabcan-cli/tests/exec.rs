//! `crabcan exec` end to end, as engines drive it: a container made with `create`/`start`
//! over the test root filesystem, every command a subprocess. The test plays the engine:
//! it is a child subreaper (as conmon and containerd's shim are), so a detached exec'd
//! process becomes its child.

mod bounded;
mod common;
mod engine;

use bounded::output_within;
use common::*;
use engine::*;
use serde_json::{Value, json};
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The container's own command: waits to be killed.
const WAIT: &str = "trap 'exit 3' TERM; while :; do sleep 0.05; done";

/// The 14 capabilities podman and docker give (their exec process.json files).
const ENGINE_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// The same set as a capability mask.
const ENGINE_CAP_MASK: &str = "00000000a80425fb";

engine_env! {
    /// One test's state root, bundle and container.
    struct Env {
        id: String,
        pid: i32,
    }
}

impl Env {
    /// A created and started container running `args` (adjusted by `tweak`).
    fn running(name: &str, args: &[&str], tweak: impl FnOnce(&mut Value)) -> Env {
        let e = Env::created(name, args, tweak);
        assert_ok(&e.cc(&["start", &e.id]));
        e
    }

    /// A created container (waiting for start) that will run `args`.
    fn created(name: &str, args: &[&str], tweak: impl FnOnce(&mut Value)) -> Env {
        let e = Engine::new(&format!("exec-{name}"));
        let b = e.bundle("bundle", args, |c| {
            c["hostname"] = json!(format!("exec-{name}"));
            tweak(c);
        });
        let id = format!("exec-{name}-{}", std::process::id());
        let pid = e.create(&id, &b);
        Env { e, id, pid }
    }

    /// `exec [flags] ID args...` in the foreground.
    fn exec(&self, flags: &[&str], args: &[&str]) -> Output {
        let mut v = vec!["exec"];
        v.extend_from_slice(flags);
        v.push(&self.id);
        v.extend_from_slice(args);
        self.cc(&v)
    }

    fn cgroup_dirs(&self) -> Vec<PathBuf> {
        self.e.cgroup_dirs(&self.id)
    }

    /// `delete --force`, the container's process reaped; nothing of it left.
    fn delete(self) {
        let dirs = self.cgroup_dirs();
        assert_ok(&self.cc(&["delete", "--force", &self.id]));
        reap(self.pid);
        assert!(!self.root().join(&self.id).exists(), "state left");
        for d in dirs {
            assert!(!d.exists(), "cgroup {} left", d.display());
        }
    }
}

fn ppid(pid: i32) -> i32 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    s.rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}

fn ns_link(pid: &str, kind: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// A detached exec of `args`; returns the exec'd process's pid (now our child).
fn exec_detached(env: &Env, flags: &[&str], args: &[&str]) -> i32 {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let pf = env.dir.path().join(format!("exec-pid-{n}"));
    let _ = std::fs::remove_file(&pf);
    let mut v = vec!["exec", "-d", "--pid-file"];
    let pfs = pf.to_string_lossy().into_owned();
    v.push(&pfs);
    v.extend_from_slice(flags);
    v.push(&env.id);
    v.extend_from_slice(args);
    assert_ok(&env.cc(&v));
    std::fs::read_to_string(&pf)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn exec_joins_the_containers_namespaces_cgroups_and_mounts() {
    let env = Env::running("joins", &["sh", "-c", WAIT], |_| {});
    let o = env.exec(&[], &["sh", "-c", "hostname; echo $$"]);
    assert_ok(&o);
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], format!("exec-joins"), "{out}");
    let inner: i32 = lines[1].parse().unwrap();
    assert!(inner > 1, "a pid of the container's namespace: {out}");
    // Seen from the host: a running exec'd process is in every namespace and cgroup of the
    // container's process, and sees the same mounts.
    let p = exec_detached(&env, &[], &["sleep", "30"]);
    let (c, e) = (env.pid.to_string(), p.to_string());
    for kind in ["mnt", "pid", "ipc", "uts", "net", "cgroup"] {
        assert_eq!(ns_link(&c, kind), ns_link(&e, kind), "{kind}");
    }
    assert_ne!(ns_link("self", "pid"), ns_link(&e, "pid"));
    let cg = |pid: &str| std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert_eq!(cg(&c), cg(&e));
    for d in env.cgroup_dirs() {
        let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap();
        assert!(procs.lines().any(|l| l == e), "{p} not in {}", d.display());
    }
    let mi = |pid: &str| std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    assert_eq!(mi(&c), mi(&e));
    assert_eq!(
        std::fs::read_link(format!("/proc/{e}/root")).unwrap(),
        Path::new("/")
    );
    // The caller adopts it; no crabcan process is between.
    assert_eq!(ppid(p), std::process::id() as i32);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), nix::sys::signal::SIGKILL).unwrap();
    assert_eq!(reap(p), 137);
    env.delete();
}

#[test]
fn the_exit_status_is_the_exec_d_processs_and_signals_are_forwarded() {
    let env = Env::running("status", &["sh", "-c", WAIT], |_| {});
    assert_eq!(code(&env.exec(&[], &["sh", "-c", "exit 7"])), 7);
    assert_eq!(code(&env.exec(&[], &["sh", "-c", "kill -9 $$"])), 137);
    assert_eq!(code(&env.exec(&[], &["true"])), 0);
    let o = env.exec(&[], &["no-such-command"]);
    assert_ne!(code(&o), 0);
    assert_one_line(&o, "executable file not found");
    // SIGTERM to crabcan reaches the process, whose trap answers with 5.
    let mut child = env
        .cmd(&[
            "exec",
            &env.id,
            "sh",
            "-c",
            "trap 'exit 5' TERM; echo up; while :; do sleep 0.05; done",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = bounded::Lines::new(child.stdout.take().unwrap());
    assert_eq!(lines.next_within(LIMIT).unwrap().as_deref(), Some("up"));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::SIGTERM,
    )
    .unwrap();
    let st = bounded::wait_within(&mut child, LIMIT, "crabcan exec");
    assert_eq!(st.code(), Some(5));
    env.delete();
}

#[test]
fn flags_and_process_files_shape_the_exec_d_process() {
    let env = Env::running("process", &["sh", "-c", WAIT], |_| {});
    let script = "id; pwd; echo $FOO; grep -E '^Cap(Eff|Bnd)' /proc/self/status";
    let o = env.exec(
        &["-u", "65534:65534", "--cwd", "/tmp", "-e", "FOO=bar"],
        &["sh", "-c", script],
    );
    assert_ok(&o);
    let out = stdout(&o);
    assert!(out.starts_with("uid=65534"), "{out}");
    assert!(out.contains("\n/tmp\nbar\n"), "{out}");
    // docker's shape: nobody, /tmp, env, the engines' capabilities.
    let docker = json!({
        "user": {"uid": 65534, "gid": 65534, "additionalGids": [65534]},
        "args": ["sh", "-c", script],
        "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "HOSTNAME=abc", "FOO=bar"],
        "cwd": "/tmp",
        "capabilities": {"bounding": ENGINE_CAPS, "effective": ENGINE_CAPS,
                         "permitted": ENGINE_CAPS},
        "oomScoreAdj": 0
    });
    let pf = env.dir.path().join("docker-process.json");
    std::fs::write(&pf, docker.to_string()).unwrap();
    let o = env.exec(&["--process", &pf.to_string_lossy()], &[]);
    assert_ok(&o);
    let out = stdout(&o);
    assert!(out.starts_with("uid=65534(nobody) gid=65534"), "{out}");
    assert!(out.contains("\n/tmp\nbar\n"), "{out}");
    assert!(
        out.contains(&format!("CapBnd:\t{ENGINE_CAP_MASK}")),
        "{out}"
    );
    // ctr's shape: root with the engines' set, effective; rlimits as given.
    let ctr = json!({
        "user": {"uid": 0, "gid": 0, "additionalGids": [0]},
        "args": ["sh", "-c", "grep -E '^CapEff' /proc/self/status; ulimit -n; id -G"],
        "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "cwd": "/",
        "capabilities": {"bounding": ENGINE_CAPS, "effective": ENGINE_CAPS,
                         "permitted": ENGINE_CAPS},
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1000, "soft": 900}],
        "noNewPrivileges": true
    });
    std::fs::write(&pf, ctr.to_string()).unwrap();
    let o = env.exec(&["-p", &pf.to_string_lossy()], &[]);
    assert_ok(&o);
    assert_eq!(
        stdout(&o),
        format!("CapEff:\t{ENGINE_CAP_MASK}\n900\n0\n"),
        "{}",
        stderr(&o)
    );
    // The container's own defaults (the runtime-spec's three capabilities) with one added.
    let o = env.exec(
        &["--cap", "CAP_CHOWN"],
        &["grep", "^CapEff", "/proc/self/status"],
    );
    assert_ok(&o);
    assert_eq!(stdout(&o), "CapEff:\t0000000020000421\n");
    let o = env.exec(&["-u", "x"], &["true"]);
    assert_one_line(&o, "--user");
    env.delete();
}

#[test]
fn the_config_is_the_one_the_container_was_created_with() {
    let env = Env::running("config", &["sh", "-c", WAIT], |c| {
        c["process"]["env"] = json!(["PATH=/bin", "STAMP=first"]);
    });
    let cfg = env.dir.path().join("bundle/config.json");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace("STAMP=first", "STAMP=second")).unwrap();
    let o = env.exec(&[], &["sh", "-c", "echo $STAMP"]);
    assert_ok(&o);
    assert_eq!(stdout(&o), "first\n");
    env.delete();
}

/// Reads the pty master until `end` shows up (or it closes). The master comes back with
/// the text: closing it while the process still runs would hang up its terminal (SIGHUP).
fn read_pty_until(master: OwnedFd, end: &str) -> (String, std::fs::File) {
    let (tx, rx) = std::sync::mpsc::channel();
    let end = end.to_string();
    std::thread::spawn(move || {
        let mut f = std::fs::File::from(master);
        let mut all = Vec::new();
        let mut buf = [0u8; 1024];
        while let Ok(n) = f.read(&mut buf) {
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&all).contains(&end) {
                break;
            }
        }
        let _ = tx.send((String::from_utf8_lossy(&all).into_owned(), f));
    });
    rx.recv_timeout(LIMIT)
        .expect("the pty said nothing in time")
}

#[test]
fn a_console_socket_receives_the_exec_d_processs_pty() {
    let env = Env::running("console", &["sh", "-c", WAIT], |_| {});
    let sock_path = env.dir.path().join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock_path).unwrap();
    let accept = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        recv_fd(&s)
    });
    // podman's `exec -it` shape.
    let podman = json!({
        "terminal": true,
        "user": {"uid": 0, "gid": 0},
        "args": ["sh", "-c", "tty; [ -t 0 ] && echo stdin-is-a-tty; echo done"],
        "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm", "container=podman", "HOME=/root"],
        "cwd": "/",
        "capabilities": {"bounding": ENGINE_CAPS, "effective": ENGINE_CAPS,
                         "permitted": ENGINE_CAPS},
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024},
                    {"type": "RLIMIT_NPROC", "hard": 1024, "soft": 1024}]
    });
    let pf = env.dir.path().join("process.json");
    std::fs::write(&pf, podman.to_string()).unwrap();
    let p = exec_detached(
        &env,
        &[
            "--process",
            &pf.to_string_lossy(),
            "--tty",
            "--console-socket",
            &sock_path.to_string_lossy(),
        ],
        &[],
    );
    let master = accept.join().unwrap();
    let (out, master) = read_pty_until(master, "done");
    assert!(out.contains("/dev/pts/"), "{out:?}");
    assert!(out.contains("stdin-is-a-tty"), "{out:?}");
    assert_eq!(reap(p), 0);
    drop(master);
    env.delete();
}

#[test]
fn a_foreground_tty_is_crabcans_own_pty_relayed() {
    let env = Env::running("tty", &["sh", "-c", WAIT], |_| {});
    let o = env.exec(
        &["-t"],
        &[
            "sh",
            "-c",
            "tty; [ -t 0 ] && [ -t 1 ] && echo both-tty; exit 4",
        ],
    );
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("/dev/pts/"), "{out:?}");
    assert!(out.contains("both-tty"), "{out:?}");
    let o = env.exec(&["-t", "-d"], &["true"]);
    assert_one_line(&o, "cannot allocate tty");
    env.delete();
}

/// Runs `cmd` with a pipe's write end as fd 3 (not close-on-exec); returns what came
/// through the pipe and the output.
fn with_fd3(mut cmd: Command) -> (String, Output) {
    let (r, w) = nix::unistd::pipe().unwrap();
    let wraw = w.as_raw_fd();
    // SAFETY: dup2 onto fd 3 in the child before exec; async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(wraw, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let o = output_within(&mut cmd, LIMIT);
    drop(w);
    let mut s = String::new();
    let _ = std::fs::File::from(r).read_to_string(&mut s);
    (s, o)
}

#[test]
fn preserve_fds_passes_descriptors_and_nothing_else_is_inherited() {
    let env = Env::running("fds", &["sh", "-c", WAIT], |_| {});
    let (got, o) = with_fd3(env.cmd(&[
        "exec",
        "--preserve-fds",
        "1",
        &env.id,
        "sh",
        "-c",
        "echo through-fd3 >&3",
    ]));
    assert_ok(&o);
    assert_eq!(got, "through-fd3\n");
    // Without it the same descriptor does not reach the process (CVE-2024-21626 class).
    let (got, o) = with_fd3(env.cmd(&[
        "exec",
        &env.id,
        "sh",
        "-c",
        "ls /proc/self/fd; echo through-fd3 >&3",
    ]));
    assert_eq!(got, "", "fd 3 reached the process");
    assert_ne!(code(&o), 0);
    let fds: Vec<String> = stdout(&o).lines().map(String::from).collect();
    assert_eq!(fds, ["0", "1", "2", "3"], "only stdio (and ls's own dir)");
    env.delete();
}

/// CVE-2024-21626: a host directory leaked as fd 7, and the caller's host working
/// directory, never become the exec'd process's working directory.
#[test]
fn a_leaked_host_directory_is_not_a_way_out() {
    let env = Env::running("leak", &["sh", "-c", WAIT], |_| {});
    let marker = env.dir.path().join("host-only-marker");
    std::fs::write(&marker, "host").unwrap();
    let dir = nix::fcntl::open(
        env.dir.path(),
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY,
        nix::sys::stat::Mode::empty(),
    )
    .unwrap();
    let raw = dir.as_raw_fd();
    for (flags, script) in [
        (&["--cwd", "/proc/self/fd/7"][..], "pwd; ls"),
        (&[][..], "cd /proc/self/fd/7 && pwd && ls"),
        (
            &[][..],
            "pwd; ls ../../../.. ; cat ../../../../host-only-marker",
        ),
    ] {
        let mut cmd = env.cmd(&["exec"]);
        cmd.args(flags)
            .args([env.id.as_str(), "sh", "-c", script])
            .current_dir(env.dir.path());
        // SAFETY: dup2 onto fd 7 in the child before exec; async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(raw, 7) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let o = output_within(&mut cmd, LIMIT);
        let out = stdout(&o);
        assert!(
            !out.contains("host-only-marker") && !out.contains("host\n"),
            "{flags:?} {script}: the host directory was reached: {out}"
        );
        assert!(!out.contains("unreachable"), "{out}");
    }
    drop(dir);
    env.delete();
}

#[test]
fn paused_stopped_unknown_and_created_containers() {
    // Created, not started: exec works (as in runc).
    let env = Env::created("created", &["sh", "-c", WAIT], |_| {});
    let o = env.exec(&[], &["hostname"]);
    assert_ok(&o);
    assert_eq!(stdout(&o), "exec-created\n");
    assert_ok(&env.cc(&["start", &env.id]));
    // Paused: refused clearly, and works again once thawed.
    let dirs = env.cgroup_dirs();
    let freezer = |on: bool| {
        for d in &dirs {
            if d.join("freezer.state").exists() {
                let v = if on { "FROZEN" } else { "THAWED" };
                std::fs::write(d.join("freezer.state"), v).unwrap();
                return;
            }
            if d.join("cgroup.freeze").exists() {
                std::fs::write(d.join("cgroup.freeze"), if on { "1" } else { "0" }).unwrap();
                return;
            }
        }
        panic!("no freezer among {dirs:?}");
    };
    freezer(true);
    let deadline = Instant::now() + LIMIT;
    loop {
        let o = env.cc(&["state", &env.id]);
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        if v["status"] == "paused" {
            break;
        }
        assert!(Instant::now() < deadline, "never paused");
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = env.exec(&[], &["true"]);
    assert_eq!(code(&o), 1);
    assert_one_line(&o, "cannot exec in a paused container");
    freezer(false);
    let deadline = Instant::now() + LIMIT;
    while code(&env.exec(&[], &["true"])) != 0 {
        assert!(
            Instant::now() < deadline,
            "exec never worked after the thaw"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Stopped.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(env.pid),
        nix::sys::signal::SIGKILL,
    )
    .unwrap();
    let pid = env.pid;
    assert_eq!(reap(pid), 137);
    let o = env.exec(&[], &["true"]);
    assert_eq!(code(&o), 1);
    assert_one_line(&o, "cannot exec in a stopped container");
    // Unknown.
    let o = env.cc(&["exec", "no-such-container-x", "true"]);
    assert_eq!(code(&o), 1);
    assert_one_line(&o, "container does not exist");
    let dirs = env.cgroup_dirs();
    assert_ok(&env.cc(&["delete", &env.id]));
    for d in dirs {
        assert!(!d.exists());
    }
}

#[test]
fn no_exec_d_process_survives_delete_force() {
    let before = host_state();
    let env = Env::running("cleanup", &["sh", "-c", WAIT], |_| {});
    let detached = exec_detached(&env, &[], &["sleep", "1000"]);
    let mut fg = env
        .cmd(&["exec", &env.id, "sh", "-c", "echo up; exec sleep 1001"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = bounded::Lines::new(fg.stdout.take().unwrap());
    assert_eq!(lines.next_within(LIMIT).unwrap().as_deref(), Some("up"));
    assert!(alive(detached));
    let (root, id) = (env.root(), env.id.clone());
    // As an engine does (a subreaper reaps as children exit): the pid namespace's init
    // finishes dying only once every other process of the namespace is reaped.
    let reaper = std::thread::spawn(move || reap(detached));
    env.delete();
    assert_eq!(reaper.join().unwrap(), 137);
    let st = bounded::wait_within(&mut fg, LIMIT, "foreground exec");
    assert_eq!(st.code(), Some(137));
    assert!(!root.join(&id).exists());
    // Without a pid namespace of its own, the container's cgroup is what holds its
    // processes: an exec'd one goes with it too.
    let env = Env::running("cleanup-hostpid", &["sh", "-c", WAIT], |c| {
        let ns: Vec<Value> = c["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["type"] != "pid")
            .cloned()
            .collect();
        c["linux"]["namespaces"] = Value::Array(ns);
    });
    let detached = exec_detached(&env, &[], &["sleep", "1002"]);
    assert_eq!(
        ns_link("self", "pid"),
        ns_link(&detached.to_string(), "pid")
    );
    let reaper = std::thread::spawn(move || reap(detached));
    env.delete();
    assert_eq!(reaper.join().unwrap(), 137);
    assert_eq!(host_state(), before);
}

/// CVE-2019-5736 and CVE-2016-9962 during execs: a process in the container watches every
/// process that appears while execs run; none that still runs the runtime's image may be
/// dumpable (open /proc/PID/exe) or let it write the runtime's binary. Judged on a copy.
#[test]
fn execs_give_the_container_no_handle_on_the_runtime() {
    require_root();
    subreaper();
    let env = Env::running("cve", &["sh", "-c", WAIT], |_| {});
    let copy = env.dir.path().join("crabcan-under-attack");
    copy_crabcan_to(&copy);
    let original = std::fs::read(&copy).unwrap();
    let run_copy = |args: &[&str]| {
        let mut c = Command::new(&copy);
        c.arg("--root").arg(env.root()).args(args);
        c
    };
    let mut watcher = run_copy(&[
        "exec",
        &env.id,
        "/bin/crabcan-probe",
        "watch-execs",
        "stdin",
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let lines = bounded::Lines::new(watcher.stdout.take().unwrap());
    assert_eq!(
        lines.next_within(LIMIT).unwrap().as_deref(),
        Some("watching")
    );
    // Enough execs for the watcher to meet some in setup: at least 5 s of them and at least
    // 8 (one exec takes seconds under emulation).
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < Duration::from_secs(5) || n < 8 {
        let o = output_within(
            run_copy(&["exec", &env.id, "sh", "-c", "true"]).stdin(Stdio::null()),
            LIMIT,
        );
        assert_ok(&o);
        n += 1;
    }
    drop(watcher.stdin.take());
    let verdict = lines.rest_within(LIMIT).unwrap();
    bounded::wait_within(&mut watcher, LIMIT, "the watcher");
    assert!(
        std::fs::read(&copy).unwrap() == original,
        "the runtime's binary was rewritten: {verdict}"
    );
    assert!(verdict.starts_with("blocked: watch-execs"), "{verdict}");
    let seen: usize = verdict
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap_or(0);
    assert!(
        seen > 0,
        "the watcher never caught an exec in setup ({n} execs): {verdict}"
    );
    eprintln!("{verdict} during {n} execs");
    env.delete();
}

/// A foreground exec waits as long as its process runs, from the binary as installed (only
/// the process that entered the container ran from the protected image): rewriting that file
/// in place meanwhile, as `cp` over it would, is refused while it runs (ETXTBSY) and the
/// exec returns the process's status. A wait from the binary's read-only view shares the
/// file's pages with no such refusal, and dies of the rewrite.
#[test]
fn a_foreground_exec_outlives_a_rewrite_of_the_binary_in_place() {
    require_root();
    let env = Env::running("rewrite", &["sh", "-c", WAIT], |_| {});
    let copy = env.dir.path().join("crabcan-rewritten");
    copy_crabcan_to(&copy);
    let mut child = Command::new(&copy)
        .arg("--root")
        .arg(env.root())
        .args(["exec", &env.id, "sh", "-c", "echo waiting; read x; exit 9"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = bounded::Lines::new(child.stdout.take().unwrap());
    assert_eq!(
        lines.next_within(LIMIT).unwrap().as_deref(),
        Some("waiting")
    );
    let len = std::fs::metadata(&copy).unwrap().len();
    match std::fs::OpenOptions::new().write(true).open(&copy) {
        Ok(mut f) => {
            use std::io::Write;
            f.write_all(&vec![0u8; usize::try_from(len).unwrap()])
                .unwrap();
            eprintln!("the binary was rewritten in place");
        }
        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::ETXTBSY), "{e}"),
    }
    drop(child.stdin.take());
    let st = bounded::wait_within(&mut child, LIMIT, "crabcan exec");
    assert_eq!(st.code(), Some(9), "{st:?}");
    env.delete();
}

/// Whether `bin` is dynamically linked (names an ELF interpreter).
/// Whether the ELF executable `bin` has a PT_INTERP program header (the kernel then loads
/// that interpreter, from the caller's root, before the program).
fn has_interpreter(bin: &Path) -> bool {
    let elf = std::fs::read(bin).unwrap();
    let word = |at: usize, n: usize| -> u64 {
        elf[at..at + n]
            .iter()
            .rev()
            .fold(0, |v, b| v << 8 | u64::from(*b))
    };
    assert!(
        elf.starts_with(b"\x7fELF\x02\x01"),
        "{} is no little-endian 64-bit ELF file",
        bin.display()
    );
    let (phoff, phentsize, phnum) = (
        word(0x20, 8) as usize,
        word(0x36, 2) as usize,
        word(0x38, 2),
    );
    (0..phnum as usize).any(|i| word(phoff + i * phentsize, 4) == 3)
}

/// CVE-2019-5736 as it was exploited: the exec'd command is a script whose interpreter is
/// `/proc/self/exe`, so the kernel runs the runtime's binary in the container with the
/// image's dynamic loader (the attacker), which holds its own executable and writes
/// through it once the runtime is gone (a detached exec: at once). Judged on a copy.
#[test]
fn an_exec_d_image_cannot_rewrite_the_runtime_through_proc_self_exe() {
    proc_self_exe_attack(true);
}

/// The same through a foreground exec, whose crabcan waits for the process from the binary
/// as installed: the attacker leaves a child behind in the container and exits, so the
/// wait ends and the child writes once nothing of crabcan runs any more.
#[test]
fn a_foreground_exec_d_image_cannot_rewrite_the_runtime_through_proc_self_exe() {
    proc_self_exe_attack(false);
}

fn proc_self_exe_attack(detach: bool) {
    require_root();
    let name = if detach { "loader" } else { "loader-fg" };
    let image_dir = Scratch::new(&format!("exec-cve-{name}"));
    let root = image_dir.path().join("root");
    let o = output_within(Command::new("cp").arg("-a").arg(rootfs()).arg(&root), LIMIT);
    assert!(o.status.success(), "cp -a of the test rootfs: {o:?}");
    let env = Env::running(name, &["sh", "-c", WAIT], |c| {
        c["root"]["path"] = json!(root);
    });
    let copy = env.dir.path().join("crabcan-under-attack");
    copy_crabcan_to(&copy);
    let original = std::fs::read(&copy).unwrap();
    // A static runtime (as in the VM) asks for no interpreter: the staged loader must then
    // never run (checked below), and the watch test covers the rest.
    let dynamic = has_interpreter(&copy);
    std::fs::create_dir_all(root.join("lib64")).unwrap();
    std::fs::copy(
        root.join("bin/crabcan-probe"),
        root.join("lib64/ld-linux-x86-64.so.2"),
    )
    .unwrap();
    let stage = if detach {
        "overwrite-exe"
    } else {
        "overwrite-exe-behind"
    };
    std::fs::write(root.join("entry"), format!("#!/proc/self/exe {stage}\n")).unwrap();
    std::fs::set_permissions(
        root.join("entry"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let pf = env.dir.path().join("attacker-pid");
    let mut c = Command::new(&copy);
    c.arg("--root")
        .arg(env.root())
        .arg("exec")
        .args(detach.then_some("-d"))
        .arg("--pid-file")
        .arg(&pf)
        .args([env.id.as_str(), "/entry"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let lines = bounded::Lines::new(child.stdout.take().unwrap());
    let st = bounded::wait_within(&mut child, LIMIT, "crabcan exec");
    // Static: the interpreter is crabcan itself, which refuses the stage as a command line
    // (exit 125, which a foreground exec passes on).
    let refused = !dynamic && !detach && st.code() == Some(125);
    assert!(st.success() || refused, "{st:?}");
    let attacker: i32 = std::fs::read_to_string(&pf).unwrap().parse().unwrap();
    let out = lines.rest_within(LIMIT).unwrap();
    if detach {
        reap(attacker);
    }
    assert!(
        std::fs::read(&copy).unwrap() == original,
        "the runtime's binary was rewritten: {out}"
    );
    if dynamic {
        assert!(out.starts_with("ready\nblocked: overwrite-exe"), "{out}");
    } else {
        assert!(!out.contains("ready"), "the image's loader ran: {out}");
    }
    env.delete();
}

#[test]
fn exec_joins_a_containers_user_namespace() {
    const HOST_BASE: u32 = 2_000_000_000;
    let env = Env::running("userns", &["sh", "-c", WAIT], |c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}));
        let map = json!([{"containerID": 0, "hostID": HOST_BASE, "size": 65536}]);
        c["linux"]["uidMappings"] = map.clone();
        c["linux"]["gidMappings"] = map;
    });
    let o = env.exec(
        &[],
        &["sh", "-c", "id -u; hostname; cat /proc/self/uid_map"],
    );
    assert_ok(&o);
    let out = stdout(&o);
    let words: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(
        words,
        ["0", "exec-userns", "0", &HOST_BASE.to_string(), "65536"],
        "{out}"
    );
    let p = exec_detached(&env, &["-u", "1000:1000"], &["sleep", "30"]);
    let (c, e) = (env.pid.to_string(), p.to_string());
    for kind in ["user", "mnt", "pid", "ipc", "uts", "net", "cgroup"] {
        assert_eq!(ns_link(&c, kind), ns_link(&e, kind), "{kind}");
    }
    let status = std::fs::read_to_string(format!("/proc/{e}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    let host_uid = (HOST_BASE + 1000).to_string();
    assert!(
        uid_line.split_whitespace().skip(1).all(|u| u == host_uid),
        "{uid_line}"
    );
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), nix::sys::signal::SIGKILL).unwrap();
    assert_eq!(reap(p), 137);
    env.delete();
}

/// The exec'd process gets the container's seccomp profile, with and without
/// no_new_privs (without it the filter goes in before the capabilities are dropped).
#[test]
fn the_exec_d_process_has_the_containers_seccomp_profile() {
    let env = Env::running("seccomp", &["sh", "-c", WAIT], |c| {
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [{"names": ["rmdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
        });
    });
    // EPERM from the filter, where the kernel would say ENOENT.
    let script = "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; \
                  rmdir /no-such-dir 2>&1 | grep -q 'not permitted' && echo refused";
    let o = env.exec(&[], &["sh", "-c", script]);
    assert_ok(&o);
    assert_eq!(stdout(&o), "NoNewPrivs:\t1\nSeccomp:\t2\nrefused\n");
    let docker_like = json!({
        "user": {"uid": 0, "gid": 0},
        "args": ["sh", "-c", script],
        "env": ["PATH=/bin"],
        "cwd": "/",
        "capabilities": {"bounding": ENGINE_CAPS, "effective": ENGINE_CAPS,
                         "permitted": ENGINE_CAPS},
        "noNewPrivileges": false
    });
    let pf = env.dir.path().join("process.json");
    std::fs::write(&pf, docker_like.to_string()).unwrap();
    let o = env.exec(&["--process", &pf.to_string_lossy()], &[]);
    assert_ok(&o);
    assert_eq!(stdout(&o), "NoNewPrivs:\t0\nSeccomp:\t2\nrefused\n");
    env.delete();
}
