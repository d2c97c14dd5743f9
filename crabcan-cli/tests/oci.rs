//! The OCI runtime commands end to end, as engines drive them: bundles made with
//! `crabcan spec` over the test root filesystem, every command a subprocess.
//!
//! The test plays the engine: it is a child subreaper (as conmon and containerd's shim are),
//! so a container whose `create` has exited becomes its child, and it reaps the ones it made.

mod bounded;
mod common;
mod engine;

use bounded::output_within;
use common::*;
use engine::*;
use serde_json::{Value, json};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

engine_env! {
    /// One test's state root and bundles, under target/.
    struct Env {}
}

impl Env {
    fn new(name: &str) -> Env {
        Env {
            e: Engine::new(&format!("oci-{name}")),
        }
    }

    /// Nothing of `id` is left in the state root.
    fn assert_gone(&self, id: &str) {
        assert!(
            !self.root().join(id).exists(),
            "{id}'s state directory is left"
        );
        let o = self.cc(&["state", id]);
        assert_eq!(code(&o), 1);
        assert_one_line(&o, "container does not exist");
    }
}

const TRAP_LOOP: &str = "trap 'exit 3' TERM; echo started; while :; do sleep 0.05; done";

#[test]
fn lifecycle_goes_through_every_status() {
    let env = Env::new("life");
    let b = env.bundle("b", &["sh", "-c", TRAP_LOOP], |_| {});
    let pid = env.create("c1", &b);
    assert!(alive(pid));
    assert_eq!(env.status("c1"), "created");
    let st: Value = serde_json::from_slice(&env.cc(&["state", "c1"]).stdout).unwrap();
    assert_eq!(st["pid"], json!(pid));
    assert_eq!(st["bundle"], json!(b));
    assert_eq!(st["id"], json!("c1"));
    assert!(st["created"].as_str().unwrap().ends_with('Z'));
    let o = env.cc(&["list", "-q"]);
    assert_eq!(stdout(&o), "c1\n");
    let o = env.cc(&["list", "--format", "json"]);
    let l: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(l[0]["status"], json!("created"));

    assert_ok(&env.cc(&["start", "c1"]));
    assert_eq!(env.status("c1"), "running");
    let o = env.cc(&["start", "c1"]);
    assert_eq!(code(&o), 1);
    assert_one_line(&o, "already running");

    // By name, without SIG.
    assert_ok(&env.cc(&["kill", "c1", "TERM"]));
    assert_eq!(reap(pid), 3, "the trap did not run");
    assert_eq!(env.status("c1"), "stopped");
    let o = env.cc(&["kill", "c1", "KILL"]);
    assert_eq!(code(&o), 1);
    assert_one_line(&o, "container not running");
    assert_ok(&env.cc(&["delete", "c1"]));
    env.assert_gone("c1");

    // By number.
    let pid = env.create("c2", &b);
    assert_ok(&env.cc(&["start", "c2"]));
    assert_ok(&env.cc(&["kill", "c2", "9"]));
    assert_eq!(reap(pid), 128 + 9);
    assert_ok(&env.cc(&["delete", "c2"]));
    env.assert_gone("c2");

    // SIGTERM spelled out, to a created container: its process has no handler yet and
    // is the init of its pid namespace, so only KILL ends it; delete does that.
    let pid = env.create("c3", &b);
    assert_ok(&env.cc(&["kill", "c3", "SIGKILL"]));
    assert_eq!(reap(pid), 128 + 9);
    assert_eq!(env.status("c3"), "stopped");
    let o = env.cc(&["start", "c3"]);
    assert_eq!(code(&o), 1);
    assert_one_line(&o, "stopped");
    assert_ok(&env.cc(&["delete", "c3"]));
    env.assert_gone("c3");
}

/// Freezes (or thaws) the cgroup in `dirs` through whichever freezer the host has.
fn freeze(dirs: &[PathBuf], on: bool) {
    for d in dirs {
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
}

#[test]
fn the_cgroup_holds_the_limits_pauses_and_goes_with_delete() {
    let env = Env::new("cgroup");
    let leaf = format!("crabcan-oci-test-{}", std::process::id());
    let b = env.bundle("b", &["sh", "-c", TRAP_LOOP], |c| {
        c["linux"]["cgroupsPath"] = json!(leaf);
        c["linux"]["resources"]["pids"] = json!({"limit": 42});
    });
    let pid = env.create("g1", &b);
    let dirs = env.cgroup_dirs("g1");
    assert!(!dirs.is_empty());
    assert!(
        dirs.iter().all(|d| d.is_dir() && d.ends_with(&leaf)),
        "{dirs:?}"
    );
    let pids_max: Vec<String> = dirs
        .iter()
        .filter_map(|d| std::fs::read_to_string(d.join("pids.max")).ok())
        .collect();
    assert_eq!(pids_max, ["42\n"], "{dirs:?}");
    // The process is in it before it runs.
    let procs: Vec<String> = dirs
        .iter()
        .filter_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
        .collect();
    assert!(
        procs.iter().all(|p| p.trim() == pid.to_string()),
        "{procs:?}"
    );
    assert_ok(&env.cc(&["start", "g1"]));
    assert_eq!(env.status("g1"), "running");
    freeze(&dirs, true);
    let deadline = Instant::now() + LIMIT;
    while env.status("g1") != "paused" {
        assert!(Instant::now() < deadline, "never paused");
        std::thread::sleep(Duration::from_millis(10));
    }
    freeze(&dirs, false);
    assert_eq!(env.status("g1"), "running");
    assert_ok(&env.cc(&["kill", "--all", "g1", "KILL"]));
    assert_eq!(reap(pid), 128 + 9);
    assert_ok(&env.cc(&["delete", "g1"]));
    env.assert_gone("g1");
    for d in &dirs {
        assert!(!d.exists(), "{} is left", d.display());
    }
}

/// The configs the engines wrote, run as they are but for what points at their own
/// machine (the root, bind sources, the cgroup parent): their seccomp profiles, capability
/// sets without no_new_privs, mounts, masked paths and device rules work together.
#[test]
fn engine_configs_run() {
    let env = Env::new("engines");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crabcan-oci/tests/fixtures");
    for (n, name) in [
        "podman-config.json",
        "docker-config.json",
        "ctr-config.json",
    ]
    .iter()
    .enumerate()
    {
        let b = env.dir.path().join(format!("engine-{n}"));
        std::fs::create_dir_all(&b).unwrap();
        let mut c: Value =
            serde_json::from_str(&std::fs::read_to_string(fixtures.join(name)).unwrap()).unwrap();
        c["root"]["path"] = json!(rootfs());
        c["root"]["readonly"] = json!(true);
        c["process"]["terminal"] = json!(false);
        c["process"]["args"] = json!([
            "sh",
            "-c",
            "echo ok; grep -E '^(Seccomp|NoNewPrivs|CapBnd):' /proc/self/status; \
             cat /proc/kcore 2>&1 | head -c 0; echo > /dev/null && echo devnull-ok"
        ]);
        c["mounts"]
            .as_array_mut()
            .unwrap()
            .retain(|m| m["type"] != "bind");
        c["linux"]["cgroupsPath"] = json!(format!("crabcan-oci-engine-{}-{n}", std::process::id()));
        c.as_object_mut().unwrap().remove("hooks");
        std::fs::write(b.join("config.json"), c.to_string()).unwrap();
        let o = env.cc(&["run", "-b", &b.to_string_lossy(), &format!("engine-{n}")]);
        assert_ok(&o);
        let out = stdout(&o);
        assert!(out.starts_with("ok\n"), "{name}: {out}");
        assert!(out.contains("devnull-ok"), "{name}: {out}");
        let seccomp = if c["linux"]["seccomp"].is_object() {
            "2"
        } else {
            "0"
        };
        assert!(
            out.contains(&format!("Seccomp:\t{seccomp}")),
            "{name}: {out}"
        );
        // docker's and podman's configs leave no_new_privs off (the filter then goes in
        // before the capabilities are dropped), ctr's sets it.
        let nnp = c["process"]["noNewPrivileges"] == json!(true);
        assert!(
            out.contains(&format!("NoNewPrivs:\t{}", u8::from(nnp))),
            "{name}: {out}"
        );
        assert!(!out.contains("CapBnd:\t000001ffffffffff"), "{name}: {out}");
        env.assert_gone(&format!("engine-{n}"));
    }
}

/// The command runs under the config's own filter and no other, with no_new_privs on and
/// off (the filter goes in after or before the capabilities are dropped), and with hooks on
/// both sides (the process stops for them while its program is made).
#[test]
fn the_command_runs_under_the_configs_own_seccomp_filter() {
    let env = Env::new("ownfilter");
    let script = "rmdir /no-such-dir 2>&1; grep '^Seccomp:' /proc/self/status";
    for (n, (nnp, hooks)) in [(true, false), (false, false), (true, true), (false, true)]
        .into_iter()
        .enumerate()
    {
        let b = env.bundle(&format!("own-{n}"), &["sh", "-c", script], |c| {
            c["process"]["noNewPrivileges"] = json!(nnp);
            c["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
                "syscalls": [{"names": ["rmdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]});
            if hooks {
                c["hooks"] = json!({"createRuntime": [{"path": "/bin/true"}],
                                    "createContainer": [{"path": "/bin/true"}]});
            }
        });
        let id = format!("own-filter-{n}");
        let o = env.cc(&["run", "-b", &b.to_string_lossy(), &id]);
        assert_ok(&o);
        let out = stdout(&o);
        // EPERM from the filter, where the kernel has another answer (ENOENT, EROFS).
        assert!(
            out.contains("not permitted"),
            "no_new_privs {nnp}, hooks {hooks}: {out}"
        );
        assert!(out.contains("Seccomp:\t2"), "{out}");
        env.assert_gone(&id);
    }
}

#[test]
fn delete_force_kills_and_unknown_ids_are_fine_with_force() {
    let env = Env::new("force");
    let b = env.bundle("b", &["sh", "-c", TRAP_LOOP], |_| {});
    let pid = env.create("f1", &b);
    assert_ok(&env.cc(&["start", "f1"]));
    let o = env.cc(&["delete", "f1"]);
    assert_eq!(code(&o), 1);
    assert_one_line(&o, "not stopped: running");
    assert!(alive(pid));
    assert_ok(&env.cc(&["delete", "--force", "f1"]));
    assert_eq!(reap(pid), 128 + 9);
    env.assert_gone("f1");
    // A created container is deleted (killed) without --force, as runc does.
    let pid = env.create("f2", &b);
    assert_ok(&env.cc(&["delete", "f2"]));
    reap(pid);
    env.assert_gone("f2");
    let o = env.cc(&["delete", "--force", "never-made"]);
    assert_ok(&o);
    assert_eq!(stderr(&o), "", "an unknown id is no error with --force");
    let o = env.cc(&["delete", "never-made"]);
    assert_eq!(code(&o), 1);
    assert_one_line(&o, "container does not exist");
    // A directory without a record (a create killed before writing one) does not exist
    // either: refused without --force, cleared with it.
    use std::os::unix::fs::PermissionsExt;
    let stale = env.root().join("half-made");
    std::fs::create_dir(&stale).unwrap();
    std::fs::set_permissions(&stale, std::fs::Permissions::from_mode(0o700)).unwrap();
    let o = env.cc(&["delete", "half-made"]);
    assert_eq!(code(&o), 1);
    assert_one_line(&o, "container does not exist");
    assert!(stale.exists());
    assert_ok(&env.cc(&["delete", "--force", "half-made"]));
    assert!(!stale.exists(), "the record-less directory is left");
}

#[test]
fn run_returns_the_exit_status_and_deletes() {
    let env = Env::new("run");
    let b = env.bundle("b", &["sh", "-c", "echo out-$((6*7)); exit 7"], |_| {});
    let o = env.cc(&["run", "--bundle", &b.to_string_lossy(), "r1"]);
    assert_eq!(code(&o), 7, "{}", stderr(&o));
    assert_eq!(stdout(&o), "out-42\n");
    env.assert_gone("r1");
    // Detached, with a pid file: it returns while the container runs.
    let b2 = env.bundle("b2", &["sh", "-c", TRAP_LOOP], |_| {});
    let pf = b2.join("run.pid");
    let mut c = env.cmd(&[
        "run",
        "-d",
        "-b",
        &b2.to_string_lossy(),
        "--pid-file",
        &pf.to_string_lossy(),
        "r2",
    ]);
    let o = detached_output(&mut c);
    assert_ok(&o);
    let pid: i32 = std::fs::read_to_string(&pf).unwrap().parse().unwrap();
    assert!(alive(pid));
    assert_eq!(env.status("r2"), "running");
    assert_ok(&env.cc(&["delete", "--force", "r2"]));
    reap(pid);
    env.assert_gone("r2");
}

/// The dispositions the container's command starts with do not depend on its caller's: a
/// runtime started with SIGHUP and SIGINT ignored (under `nohup`, as a shell's background
/// job) must not pass that on, or the command could not even trap what the runtime
/// forwards to it (a foreground run would then wait for ever).
#[test]
fn a_callers_ignored_signals_do_not_reach_the_container() {
    let env = Env::new("sigign");
    let show = "grep SigIgn /proc/self/status";
    let b = env.bundle("b", &["sh", "-c", show], |_| {});
    let ignoring = |args: &[&str]| {
        let mut c = env.cmd(args);
        // SAFETY: only signal(2), which is async-signal-safe, runs between fork and exec.
        unsafe {
            c.pre_exec(|| {
                for s in [libc::SIGHUP, libc::SIGINT] {
                    if libc::signal(s, libc::SIG_IGN) == libc::SIG_ERR {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        output_within(&mut c, LIMIT)
    };
    // SIGHUP and SIGINT are bits 0 and 1 (the shell ignores others of its own accord).
    let hup_int = |o: &Output| {
        assert_ok(o);
        let mask = stdout(o)
            .strip_prefix("SigIgn:")
            .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
            .unwrap_or_else(|| panic!("no mask in {:?}", stdout(o)));
        mask & 0b11
    };
    let o = ignoring(&["run", "--bundle", &b.to_string_lossy(), "fg"]);
    assert_eq!(hup_int(&o), 0, "run: {}", stdout(&o));
    let b2 = env.bundle("b2", &["sh", "-c", TRAP_LOOP], |_| {});
    env.started("c", &b2);
    let o = ignoring(&["exec", "c", "sh", "-c", show]);
    assert_eq!(hup_int(&o), 0, "exec: {}", stdout(&o));
    assert_ok(&env.cc(&["delete", "--force", "c"]));
}

/// A crabcan command as uid/gid 65534 (no supplementary groups) over the state root `root`.
fn as_user(root: &Path, args: &[&str]) -> Command {
    let mut c = crabcan();
    c.uid(65534).gid(65534).arg("--root").arg(root).args(args);
    c
}

#[test]
fn an_ordinary_user_runs_creates_and_deletes_a_container() {
    let env = Env::new("rootless");
    // The user's own directory: a state root and a bundle from `spec --rootless`.
    let home = env.dir.path().join("user");
    let b = home.join("b");
    std::fs::create_dir_all(&b).unwrap();
    for d in [&home, &b] {
        std::os::unix::fs::chown(d, Some(65534), Some(65534)).unwrap();
    }
    let state = home.join("state");
    /// Deletes what the user made if the test ends early.
    struct Left(PathBuf);
    impl Drop for Left {
        fn drop(&mut self) {
            let _ = output_within(&mut as_user(&self.0, &["delete", "--force", "d"]), LIMIT);
        }
    }
    let _left = Left(state.clone());
    let bs = b.to_string_lossy().into_owned();
    assert_ok(&output_within(
        &mut as_user(&state, &["spec", "--rootless", "-b", &bs]),
        LIMIT,
    ));
    let config = b.join("config.json");
    let mut c: Value = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    c["root"]["path"] = json!(rootfs());
    c["process"]["terminal"] = json!(false);
    let maps = "cat /proc/self/uid_map /proc/self/gid_map /proc/self/setgroups";
    c["process"]["args"] = json!(["sh", "-c", format!("id -u; {maps}")]);
    std::fs::write(&config, c.to_string()).unwrap();
    let expected = "0\n0 65534 1\n0 65534 1\ndeny\n";
    // One space between the words of a line (the kernel pads the map's columns).
    let squeeze = |text: &str| {
        text.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ") + "\n")
            .collect::<String>()
    };
    // The parent writes the id maps while the process waits: more than once, as a process
    // that turned non-dumpable too early made the write fail only now and then.
    for i in 0..4 {
        let o = output_within(
            &mut as_user(&state, &["run", "--bundle", &bs, &format!("r{i}")]),
            LIMIT,
        );
        assert_ok(&o);
        assert_eq!(squeeze(&stdout(&o)), expected);
    }
    // The separate steps, an engine's way.
    let out = home.join("out");
    c["process"]["args"] = json!(["sh", "-c", format!("{{ id -u; {maps}; }} > /tmp/maps")]);
    c["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/tmp", "type": "bind", "source": out, "options": ["rbind", "rw"]
    }));
    std::fs::write(&config, c.to_string()).unwrap();
    std::fs::create_dir(&out).unwrap();
    std::os::unix::fs::chown(&out, Some(65534), Some(65534)).unwrap();
    let pid_file = home.join("pid");
    let o = detached_output(&mut as_user(
        &state,
        &[
            "create",
            "--bundle",
            &bs,
            "--pid-file",
            &pid_file.to_string_lossy(),
            "d",
        ],
    ));
    assert_ok(&o);
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    let status = |o: Output| -> String {
        assert_ok(&o);
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        v["status"].as_str().unwrap_or("?").to_string()
    };
    assert_eq!(
        status(output_within(&mut as_user(&state, &["state", "d"]), LIMIT)),
        "created"
    );
    assert_ok(&output_within(&mut as_user(&state, &["start", "d"]), LIMIT));
    assert_eq!(reap(pid), 0);
    let maps = std::fs::read_to_string(out.join("maps")).unwrap();
    assert_eq!(squeeze(&maps), expected);
    assert_eq!(
        status(output_within(&mut as_user(&state, &["state", "d"]), LIMIT)),
        "stopped"
    );
    assert_ok(&output_within(
        &mut as_user(&state, &["delete", "d"]),
        LIMIT,
    ));
    let left: Vec<_> = std::fs::read_dir(&state)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "left in the user's state root: {left:?}");
}

#[test]
fn process_attributes_hostname_and_sysctls_apply() {
    let env = Env::new("attrs");
    let host_port =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start").unwrap();
    let script = "hostname; domainname 2>/dev/null || cat /proc/sys/kernel/domainname; id -u; \
                  id -g; id -G; umask; pwd; echo $FOO; ulimit -n; \
                  cat /proc/sys/net/ipv4/ip_unprivileged_port_start /proc/self/oom_score_adj";
    let b = env.bundle("b", &["sh", "-c", script], |c| {
        c["hostname"] = json!("oci-box");
        c["domainname"] = json!("example.org");
        c["process"]["user"] = json!({"uid": 1000, "gid": 1001, "umask": 23,
                                      "additionalGids": [1002, 1003]});
        c["process"]["cwd"] = json!("/tmp");
        c["process"]["env"]
            .as_array_mut()
            .unwrap()
            .push(json!("FOO=bar baz"));
        c["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 77, "hard": 88}]);
        c["process"]["oomScoreAdj"] = json!(500);
        c["linux"]["sysctl"] = json!({"net.ipv4.ip_unprivileged_port_start": "1001"});
    });
    let o = env.cc(&["run", "-b", &b.to_string_lossy(), "attrs"]);
    assert_ok(&o);
    assert_eq!(
        stdout(&o),
        "oci-box\nexample.org\n1000\n1001\n1001 1002 1003\n0027\n/tmp\nbar baz\n77\n1001\n500\n"
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start").unwrap(),
        host_port,
        "the host's sysctl changed"
    );
    env.assert_gone("attrs");
}

#[test]
fn stdio_of_create_reaches_the_container_unchanged() {
    let env = Env::new("stdio");
    let b = env.bundle(
        "b",
        &["sh", "-c", "read x; echo got-$x; echo err-line >&2"],
        |_| {},
    );
    let mut c = env.cmd(&["create", "-b", &b.to_string_lossy(), "--pid-file"]);
    c.arg(b.join("pid")).arg("s1");
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let out = bounded::drain(child.stdout.take());
    let err = bounded::drain(child.stderr.take());
    let st = bounded::wait_within(&mut child, LIMIT, "create");
    assert!(st.success());
    let pid: i32 = std::fs::read_to_string(b.join("pid"))
        .unwrap()
        .parse()
        .unwrap();
    assert_ok(&env.cc(&["start", "s1"]));
    std::io::Write::write_all(&mut stdin, b"ping\n").unwrap();
    drop(stdin);
    assert_eq!(reap(pid), 0);
    let out = bounded::join_within(out, LIMIT, "stdout");
    let err = bounded::join_within(err, LIMIT, "stderr");
    assert_eq!(String::from_utf8_lossy(&out), "got-ping\n");
    assert_eq!(String::from_utf8_lossy(&err), "err-line\n");
    assert_ok(&env.cc(&["delete", "s1"]));
}

#[test]
fn the_console_socket_receives_the_pty_master() {
    let env = Env::new("console");
    let b = env.bundle(
        "b",
        &[
            "sh",
            "-c",
            "tty; stty size; [ -t 0 ] && echo stdin-is-a-tty",
        ],
        |c| {
            c["process"]["terminal"] = json!(true);
            c["process"]["consoleSize"] = json!({"height": 33, "width": 101});
        },
    );
    let sock_path = env.dir.path().join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock_path).unwrap();
    let accept = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        recv_fd(&s)
    });
    let o = env.cc(&[
        "create",
        "-b",
        &b.to_string_lossy(),
        "--console-socket",
        &sock_path.to_string_lossy(),
        "--pid-file",
        &b.join("pid").to_string_lossy(),
        "t1",
    ]);
    assert_ok(&o);
    let master = accept.join().unwrap();
    let pid: i32 = std::fs::read_to_string(b.join("pid"))
        .unwrap()
        .parse()
        .unwrap();
    assert_ok(&env.cc(&["start", "t1"]));
    let mut f = std::fs::File::from(master);
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0u8; 512];
        // EIO once the last slave holder is gone.
        while let Ok(n) = f.read(&mut buf) {
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
        }
        all
    });
    assert_eq!(reap(pid), 0);
    let out = bounded::join_within(reader, LIMIT, "pty");
    let out = String::from_utf8_lossy(&out);
    assert!(out.contains("/dev/pts/"), "{out}");
    assert!(out.contains("33 101"), "{out}");
    assert!(out.contains("stdin-is-a-tty\r\n"), "{out}");
    assert_ok(&env.cc(&["delete", "t1"]));
    // Without a socket, a terminal config is one clear error.
    let o = env.cc(&["create", "-b", &b.to_string_lossy(), "t2"]);
    assert_eq!(code(&o), 1);
    assert_one_line(&o, "--console-socket");
    env.assert_gone("t2");
}

#[test]
fn preserve_fds_passes_descriptors_after_stdio() {
    let env = Env::new("fds");
    let b = env.bundle(
        "b",
        &[
            "sh",
            "-c",
            "echo via-fd3 >&3; [ -e /proc/self/fd/4 ] || echo no-fd4",
        ],
        |_| {},
    );
    let (rd, wr) = nix::unistd::pipe().unwrap();
    let (_rd4, wr4) = nix::unistd::pipe().unwrap();
    let mut c = env.cmd(&[
        "create",
        "--preserve-fds",
        "1",
        "-b",
        &b.to_string_lossy(),
        "--pid-file",
        &b.join("pid").to_string_lossy(),
        "p1",
    ]);
    let (w3, w4) = (wr.as_raw_fd(), wr4.as_raw_fd());
    // SAFETY: only dup2 between fork and exec; both descriptors are open in the parent.
    unsafe {
        c.pre_exec(move || {
            if libc::dup2(w3, 3) < 0 || libc::dup2(w4, 4) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let o = detached_output(&mut c);
    assert_ok(&o);
    drop(wr);
    drop(wr4);
    let pid: i32 = std::fs::read_to_string(b.join("pid"))
        .unwrap()
        .parse()
        .unwrap();
    let reader = bounded::drain(Some(std::fs::File::from(rd)));
    let o = output_within(env.cmd(&["start", "p1"]).stdout(Stdio::piped()), LIMIT);
    assert_ok(&o);
    assert_eq!(reap(pid), 0);
    let got = bounded::join_within(reader, LIMIT, "fd 3");
    assert_eq!(String::from_utf8_lossy(&got), "via-fd3\n");
    assert_ok(&env.cc(&["delete", "p1"]));
}

#[test]
fn hooks_run_in_order_with_the_state_on_stdin() {
    let env = Env::new("hooks");
    let out = env.dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let log = out.join("order");
    let host_hook = |name: &str| {
        json!({"path": "/bin/sh", "args": ["sh", "-c",
               format!("echo \"{name} $(cat)\" >> {}", log.display())]})
    };
    let b = env.bundle("b", &["sh", "-c", "echo command >> /tmp/order"], |c| {
        c["root"]["readonly"] = json!(false);
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/tmp", "type": "bind", "source": out, "options": ["rbind", "rw"]
        }));
        c["hooks"] = json!({
            "prestart": [host_hook("prestart")],
            "createRuntime": [host_hook("createRuntime")],
            // Before the root switch: the host's paths.
            "createContainer": [host_hook("createContainer")],
            // In the container: its paths.
            "startContainer": [{"path": "/bin/sh", "args": ["sh", "-c",
                                "echo \"startContainer $(cat)\" >> /tmp/order"]}],
            "poststart": [host_hook("poststart")],
            "poststop": [host_hook("poststop")]
        });
    });
    let pid = env.create("h1", &b);
    assert_ok(&env.cc(&["start", "h1"]));
    assert_eq!(reap(pid), 0);
    assert_ok(&env.cc(&["delete", "h1"]));
    env.assert_gone("h1");
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let names: Vec<&str> = lines.iter().map(|l| l.split(' ').next().unwrap()).collect();
    // The command and poststart race (poststart runs after start released it).
    let mut sorted = names.clone();
    if let (Some(c), Some(p)) = (
        sorted.iter().position(|n| *n == "command"),
        sorted.iter().position(|n| *n == "poststart"),
    ) && c > p
    {
        sorted.swap(c, p);
    }
    assert_eq!(
        sorted,
        [
            "prestart",
            "createRuntime",
            "createContainer",
            "startContainer",
            "command",
            "poststart",
            "poststop"
        ],
        "{text}"
    );
    for l in lines.iter().filter(|l| !l.starts_with("command")) {
        let json = l.split_once(' ').unwrap().1;
        let st: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{l}: {e}"));
        assert_eq!(st["id"], json!("h1"), "{l}");
        // Once stopped, the state names no process (as runc's).
        let want = if l.starts_with("poststop") { 0 } else { pid };
        assert_eq!(st["pid"], json!(want), "{l}");
        assert_eq!(st["bundle"], json!(b), "{l}");
    }
    let status = |n: &str| {
        let l = lines.iter().find(|l| l.starts_with(n)).unwrap();
        let st: Value = serde_json::from_str(l.split_once(' ').unwrap().1).unwrap();
        st["status"].as_str().unwrap().to_string()
    };
    assert_eq!(status("prestart"), "creating");
    assert_eq!(status("createRuntime"), "creating");
    assert_eq!(status("createContainer"), "creating");
    // Released by start, before its command runs (as runc passes it).
    assert_eq!(status("startContainer"), "created");
    // The container that started, however soon its command ended.
    assert_eq!(status("poststart"), "running");
    assert_eq!(status("poststop"), "stopped");
}

#[test]
fn the_containers_own_hooks_get_the_whole_state_however_large_its_annotations() {
    let env = Env::new("bighooks");
    let out = env.dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    // Past the 64 KiB a message was once read into, for each of the two states.
    let big = "x".repeat(80 * 1024);
    let b = env.bundle("b", &["true"], |c| {
        c["root"]["readonly"] = json!(false);
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/tmp", "type": "bind", "source": out, "options": ["rbind", "rw"]
        }));
        c["annotations"] = json!({"big": big});
        let hook = |name: &str| {
            json!({"path": "/bin/sh", "args": ["sh", "-c", format!("cat > /tmp/{name}")]})
        };
        c["hooks"] = json!({
            // Before the root switch: the host's path of the bind.
            "createContainer": [{"path": "/bin/sh", "args": ["sh", "-c",
                                 format!("cat > {}/createContainer", out.display())]}],
            "startContainer": [hook("startContainer")]
        });
    });
    let pid = env.create("big1", &b);
    assert_ok(&env.cc(&["start", "big1"]));
    assert_eq!(reap(pid), 0);
    assert_ok(&env.cc(&["delete", "big1"]));
    for (hook, status) in [
        ("createContainer", "creating"),
        ("startContainer", "created"),
    ] {
        let text = std::fs::read_to_string(out.join(hook)).unwrap();
        let st: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{hook} got {} bytes of invalid JSON: {e}", text.len()));
        assert_eq!(
            st["annotations"]["big"].as_str().map(str::len),
            Some(big.len()),
            "{hook}"
        );
        assert_eq!(st["status"], json!(status), "{hook}");
    }
}

#[test]
fn a_container_joins_another_containers_network_namespace_by_path() {
    let env = Env::new("netns");
    let sb = env.bundle("sb", &["sh", "-c", TRAP_LOOP], |_| {});
    let sb_pid = env.create("sandbox", &sb);
    assert_ok(&env.cc(&["start", "sandbox"]));
    let ns = format!("/proc/{sb_pid}/ns/net");
    let app = env.bundle(
        "app",
        &[
            "sh",
            "-c",
            "stat -L -c %i /proc/self/ns/net; ip addr show lo | grep -c UP",
        ],
        |c| {
            for n in c["linux"]["namespaces"].as_array_mut().unwrap() {
                if n["type"] == "network" {
                    n["path"] = json!(ns);
                }
            }
        },
    );
    let o = env.cc(&["run", "-b", &app.to_string_lossy(), "app"]);
    assert_ok(&o);
    use std::os::unix::fs::MetadataExt;
    let want = std::fs::metadata(&ns).unwrap().ino();
    let host = std::fs::metadata("/proc/self/ns/net").unwrap().ino();
    let out = stdout(&o);
    let got: u64 = out.lines().next().unwrap().trim().parse().unwrap();
    assert_eq!(got, want, "{out}");
    assert_ne!(got, host);
    assert_ok(&env.cc(&["delete", "--force", "sandbox"]));
    reap(sb_pid);
    env.assert_gone("app");
    env.assert_gone("sandbox");
}

#[test]
fn two_containers_are_created_in_parallel() {
    let env = Env::new("parallel");
    let b = env.bundle("b", &["sh", "-c", TRAP_LOOP], |_| {});
    let spawn = |id: &str| {
        env.cmd(&[
            "create",
            "-b",
            &b.to_string_lossy(),
            "--pid-file",
            &b.join(format!("{id}.pid")).to_string_lossy(),
            id,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
    };
    let mut a = spawn("par1");
    let mut c = spawn("par2");
    assert!(bounded::wait_within(&mut a, LIMIT, "create par1").success());
    assert!(bounded::wait_within(&mut c, LIMIT, "create par2").success());
    let o = env.cc(&["list", "-q"]);
    assert_eq!(stdout(&o), "par1\npar2\n");
    for id in ["par1", "par2"] {
        let pid: i32 = std::fs::read_to_string(b.join(format!("{id}.pid")))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(env.status(id), "created");
        assert_ok(&env.cc(&["delete", id]));
        reap(pid);
        env.assert_gone(id);
    }
}

/// The container's cgroup is made in two steps around the clone of its process: the v2
/// directory before, every v1 one after, while the process makes its network namespace. A
/// hierarchy that refuses the directory (mounted read-only in a mount namespace of
/// create's own) fails create in one line with 1, and leaves nothing: no cgroup in any
/// hierarchy, no record, no process. On a hybrid host the refused one is the last v1
/// hierarchy, after the clone; on a v2-only host the v2 one, before.
#[test]
fn a_cgroup_hierarchy_that_refuses_the_container_fails_create_and_leaves_nothing() {
    let env = Env::new("rocg");
    let refusing = last_cgroup_hierarchy();
    let cg = format!("crabcan-oci-rocg-{}", std::process::id());
    let b = env.bundle("rocg", &["true"], |c| {
        c["linux"]["cgroupsPath"] = json!(cg);
    });
    let mut c = env.cmd(&["create", "-b", &b.to_string_lossy(), "rocg-x1"]);
    with_read_only_mount(&mut c, &refusing);
    let o = detached_output(&mut c);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert_one_line(&o, "Read-only file system");
    assert!(
        stderr(&o).contains(&*refusing.to_string_lossy()),
        "{}",
        stderr(&o)
    );
    assert!(cgroups_named(&cg).is_empty(), "{cg} left");
    assert!(!env.root().join("rocg-x1").exists(), "a record was left");
    assert!(processes_with("rocg-x1").is_empty(), "a process was left");
}

#[test]
fn bad_input_is_one_line_exit_1_and_leaves_nothing() {
    let env = Env::new("bad");
    let before = host_state();
    let check = |o: &Output, needle: &str, id: &str| {
        assert_eq!(code(o), 1, "{}", stderr(o));
        assert_one_line(o, needle);
        assert!(!env.root().join(id).exists(), "{id} left a state directory");
        assert!(processes_with(id).is_empty(), "{id} left a process");
    };
    let b = env.bundle("malformed", &["true"], |_| {});
    std::fs::write(b.join("config.json"), "{\"ociVersion\": ").unwrap();
    check(
        &env.cc(&["create", "-b", &b.to_string_lossy(), "bad-json-x1"]),
        "config.json",
        "bad-json-x1",
    );
    let b = env.bundle("norootfs", &["true"], |c| {
        c["root"]["path"] = json!("does-not-exist");
    });
    check(
        &env.cc(&["create", "-b", &b.to_string_lossy(), "bad-root-x2"]),
        "root.path",
        "bad-root-x2",
    );
    let b = env.bundle("refused", &["true"], |c| {
        c["linux"]["intelRdt"] = json!({"closID": "x"});
    });
    check(
        &env.cc(&["create", "-b", &b.to_string_lossy(), "bad-field-x3"]),
        "config.json linux.intelRdt: not supported",
        "bad-field-x3",
    );
    let b = env.bundle("nocmd", &["no-such-command-x4"], |_| {});
    check(
        &env.cc(&["create", "-b", &b.to_string_lossy(), "bad-cmd-x4"]),
        "exec: \"no-such-command-x4\": executable file not found in $PATH",
        "bad-cmd-x4",
    );
    let b = env.bundle("hang", &["true"], |c| {
        c["hooks"] = json!({"prestart": [{"path": "/bin/sh",
            "args": ["sh", "-c", "sleep 101.5"], "timeout": 1}]});
    });
    let t = Instant::now();
    check(
        &env.cc(&["create", "-b", &b.to_string_lossy(), "bad-hook-x5"]),
        "prestart hook /bin/sh failed: timed out",
        "bad-hook-x5",
    );
    assert!(t.elapsed() < Duration::from_secs(20));
    assert!(processes_with("101.5").is_empty(), "the hook was left");
    // A profile that parses but cannot be compiled (two rules for one call with different
    // actions): create compiles it while the container's process sets up, and fails the
    // same way, removing what it had made by then (the cgroup, the process).
    let cg = format!("crabcan-oci-overlap-{}", std::process::id());
    let marker = env.dir.path().join("hook-ran");
    let b = env.bundle("overlap", &["true"], |c| {
        c["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["read"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]},
            {"names": ["read"], "action": "SCMP_ACT_KILL",
             "args": [{"index": 1, "value": 2, "op": "SCMP_CMP_EQ"}]}]});
        c["linux"]["cgroupsPath"] = json!(cg);
        c["hooks"] = json!({"createRuntime": [{"path": "/bin/sh",
            "args": ["sh", "-c", format!("touch {}", marker.display())]}]});
    });
    check(
        &env.cc(&["create", "-b", &b.to_string_lossy(), "bad-seccomp-x9"]),
        "config.json linux.seccomp.syscalls[1]",
        "bad-seccomp-x9",
    );
    assert!(cgroups_named(&cg).is_empty(), "{cg} left");
    // No hook ran for a container that was never made.
    assert!(!marker.exists(), "the createRuntime hook ran");
    // The container's process failing its setup while create compiles its profile: its own
    // error is the one shown (the kernel may first report the program it left unread).
    let b = env.bundle("hookfails", &["true"], |c| {
        c["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]});
        c["hooks"] = json!({"createContainer": [{"path": "/bin/false"}]});
    });
    for n in 0..8 {
        let id = format!("bad-hook-seccomp-{n}");
        check(
            &env.cc(&["create", "-b", &b.to_string_lossy(), &id]),
            "createContainer hook /bin/false failed",
            &id,
        );
    }
    for args in [
        &["state", "nope-x6"][..],
        &["start", "nope-x6"],
        &["kill", "nope-x6", "9"],
        &["delete", "nope-x6"],
    ] {
        check(&env.cc(args), "container does not exist", "nope-x6");
    }
    check(
        &env.cc(&["state", "../etc"]),
        "invalid container id",
        "../etc",
    );
    check(
        &env.cc(&["kill", "sig-nope-x8", "SIGNOPE"]),
        "unknown signal",
        "sig-nope-x8",
    );
    // A duplicate id leaves the first container as it was.
    let b = env.bundle("dup", &["sh", "-c", TRAP_LOOP], |_| {});
    let pid = env.create("dup", &b);
    let o = env.cc(&["create", "-b", &b.to_string_lossy(), "dup"]);
    assert_eq!(code(&o), 1);
    assert_one_line(&o, "container with id dup already exists");
    assert_eq!(env.status("dup"), "created");
    assert_ok(&env.cc(&["delete", "dup"]));
    reap(pid);
    env.assert_gone("dup");
    // The JSON log carries the error as its last line.
    let logf = env.dir.path().join("log.json");
    let o = env.cc(&[
        "--log",
        &logf.to_string_lossy(),
        "--log-format=json",
        "kill",
        "nope-x7",
    ]);
    assert_eq!(code(&o), 1);
    let text = std::fs::read_to_string(&logf).unwrap();
    let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["level"], json!("error"));
    assert_eq!(last["msg"], json!("container does not exist"));
    assert!(last["time"].is_string());
    let o = env.cc(&["--systemd-cgroup", "list"]);
    assert_eq!(code(&o), 1);
    assert_one_line(&o, "systemd");
    // Only what this test could have made: other work on the host mounts things too.
    let ours = |h: &HostState| -> Vec<String> {
        let mine = env.dir.s();
        let root = rootfs().to_string_lossy().into_owned();
        h.mounts
            .iter()
            .filter(|m| m.contains(&mine) || m.contains(&root))
            .cloned()
            .collect()
    };
    assert_eq!(ours(&host_state()), ours(&before));
}

#[test]
fn a_killed_create_leaves_nothing_after_delete_force() {
    let env = Env::new("killed");
    let b = env.bundle("b", &["true"], |c| {
        // What a hook starts itself is its own business (as under runc): this one is one
        // process, which dies with create.
        c["hooks"] = json!({"createRuntime": [{"path": "/bin/sh",
            "args": ["sh", "-c", "exec sleep 102.5"]}]});
    });
    let id = "killed-create-x9";
    let mut child = env
        .cmd(&["create", "-b", &b.to_string_lossy(), id])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + LIMIT;
    while processes_with("102.5").is_empty() {
        assert!(Instant::now() < deadline, "the hook never ran");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + LIMIT;
    while !processes_with(id).is_empty() || !processes_with("102.5").is_empty() {
        assert!(
            Instant::now() < deadline,
            "the container or its hook outlived create"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Its orphaned process came to us (the subreaper) and died: reap that zombie by pid,
    // never with a wildcard that could take another test's child. It is the one with a pid
    // in the container's own pid namespace (two NSpid entries): the crabcan commands other
    // tests run have the same name and may be zombies waiting for their own test.
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let kids = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for pid in kids
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let in_child_ns = status
                .lines()
                .find_map(|l| l.strip_prefix("NSpid:"))
                .is_some_and(|ids| ids.split_whitespace().count() > 1);
            if stat.contains("(crabcan)") && stat.contains(") Z ") && in_child_ns {
                let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
            }
        }
    }
    let made = Engine::cgroups_of(&env.record(id, "creating.json"));
    assert!(
        made.iter().any(|d| d.is_dir()),
        "no cgroup to undo: {made:?}"
    );
    assert_ok(&env.cc(&["delete", "--force", id]));
    env.assert_gone(id);
    for d in &made {
        assert!(!d.exists(), "{} is left", d.display());
    }
}

#[test]
fn version_and_features_are_runcs_shape() {
    let o = run(&["--version"]);
    assert_ok(&o);
    let v = stdout(&o);
    let l: Vec<&str> = v.lines().collect();
    assert!(l[0].starts_with("crabcan version "), "{v}");
    assert!(l[1].starts_with("commit: "), "{v}");
    assert!(l[2].starts_with("spec: 1."), "{v}");
    let o = run(&["features"]);
    assert_ok(&o);
    let f: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        f["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .contains(&json!("network"))
    );
}

/// Whether this kernel has overlayfs (asking loads the module where it can be, as
/// crabcan's own request does).
fn has_overlayfs() -> bool {
    // SAFETY: fsopen with a static name; a returned fd is closed at once.
    let fd = unsafe { libc::syscall(libc::SYS_fsopen, c"overlay".as_ptr(), 0) };
    if fd >= 0 {
        // SAFETY: the fd fsopen just returned, closed once.
        unsafe { libc::close(fd as i32) };
    }
    fd >= 0
}

/// CVE-2019-5736 with no user namespace: while the created container's process waits (it
/// runs crabcan's code, so /proc/PID/exe names crabcan's binary), a second process in the
/// container's namespaces holds that file open and, once start has made the process exec,
/// writes through it. Judged on a copy of the binary.
#[test]
fn a_waiting_container_gives_no_writable_path_to_the_runtime_binary() {
    let env = Env::new("cve");
    let copy = env.dir.path().join("crabcan-under-attack");
    copy_crabcan_to(&copy);
    let original = std::fs::read(&copy).unwrap();
    let b = env.bundle("b", &["sh", "-c", TRAP_LOOP], |_| {});
    let root = env.root();
    let pf = b.join("pid");
    let o = detached_output(
        Command::new(&copy)
            .arg("--root")
            .arg(&root)
            .args(["create", "-b"])
            .arg(&b)
            .arg("--pid-file")
            .arg(&pf)
            .arg("cve"),
    );
    assert_ok(&o);
    let pid: i32 = std::fs::read_to_string(&pf).unwrap().parse().unwrap();
    // Root may mount: the waiting process runs the binary through a read-only overlay view
    // (no copy of it); a kernel without overlayfs gets the sealed copy. Never the file.
    let exe = format!("/proc/{pid}/exe");
    let fs = nix::sys::statfs::statfs(exe.as_str()).unwrap();
    let link = std::fs::read_link(&exe).unwrap();
    if has_overlayfs() {
        assert_eq!(
            fs.filesystem_type(),
            nix::sys::statfs::OVERLAYFS_SUPER_MAGIC,
            "the waiting process runs {link:?}"
        );
    } else {
        assert!(
            link.to_string_lossy().starts_with("/memfd:crabcan"),
            "the waiting process runs {link:?}"
        );
    }
    // The attacker: inside the container's mount and pid namespaces, fd 3 held on the
    // waiting process's executable, then the probe's write attempts through it.
    let mut attacker = Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-m", "-p", "--", "/bin/sh", "-c"])
        .arg("exec 3</proc/1/exe && echo holding && exec /bin/crabcan-probe overwrite-fd 3")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nsenter (util-linux or busybox) is needed");
    let lines = bounded::Lines::new(attacker.stdout.take().unwrap());
    assert_eq!(
        lines.next_within(LIMIT).unwrap().as_deref(),
        Some("holding"),
        "the attacker could not even open /proc/1/exe"
    );
    assert_ok(&output_within(
        Command::new(&copy)
            .arg("--root")
            .arg(&root)
            .args(["start", "cve"]),
        LIMIT,
    ));
    let verdict = lines.rest_within(LIMIT).unwrap();
    bounded::wait_within(&mut attacker, LIMIT, "the attacker");
    assert_ok(&env.cc(&["delete", "--force", "cve"]));
    reap(pid);
    assert!(
        std::fs::read(&copy).unwrap() == original,
        "the runtime's binary was rewritten: {verdict}"
    );
    assert!(verdict.starts_with("blocked: overwrite-exe"), "{verdict}");
}
