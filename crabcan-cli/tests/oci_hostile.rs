//! The OCI path under a hostile config or a hostile neighbour: what a config.json may ask
//! for, and what a container sharing namespaces or cgroups with another may reach, must not
//! touch the host or another container. Every command is a subprocess; the test plays the
//! engine (a child subreaper, as conmon and containerd's shim are).

mod bounded;
mod common;
mod engine;

use common::*;
use engine::*;
use serde_json::{Value, json};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A container that runs until killed.
const LOOP: &str = "trap 'exit 3' TERM; while :; do sleep 0.05; done";

engine_env! {
    /// One test's state root and bundles; deletes (with --force) every container it made,
    /// whatever the test's outcome.
    struct Env {
        // One test at a time: the drop reaps every child of the process (waitpid(-1)), which
        // would steal another test's crabcan from under its wait.
        _serial: std::sync::MutexGuard<'static, ()>,
    }
}

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Env {
    fn new(name: &str) -> Env {
        Env {
            _serial: SERIAL.lock().unwrap_or_else(|e| e.into_inner()),
            e: Engine::new(&format!("oci-hostile-{name}")),
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.e.delete_all();
        // Containers whose create exited are our children: reap them.
        while let Ok(s) = nix::sys::wait::waitpid(
            nix::unistd::Pid::from_raw(-1),
            Some(nix::sys::wait::WaitPidFlag::WNOHANG),
        ) {
            if s == nix::sys::wait::WaitStatus::StillAlive {
                break;
            }
        }
    }
}

/// Sets the `kind` namespace of a config to be joined at `path`.
fn join(c: &mut Value, kind: &str, path: &str) {
    for n in c["linux"]["namespaces"].as_array_mut().unwrap() {
        if n["type"] == kind {
            n["path"] = json!(path);
        }
    }
}

/// A pod sharing one pid namespace: the runtime's own hooks (prestart, createRuntime) are
/// host processes with every capability, in the host's mount namespace. Spawned inside the
/// sandbox's pid namespace, they are visible to it, and a neighbour with CAP_SYS_PTRACE
/// reads the host's filesystem through /proc/<hook>/root (or kills the hook). The spec puts
/// these hooks in the runtime's namespaces: their pid namespace must be the runtime's.
#[test]
fn runtime_hooks_stay_in_the_runtimes_pid_namespace_when_a_pid_namespace_is_joined() {
    let env = Env::new("hookpid");
    let sb = env.bundle("sb", &["sh", "-c", LOOP], |_| {});
    let sb_pid = env.started("sandbox", &sb);
    let sb_ns = format!("/proc/{sb_pid}/ns/pid");
    let out = env.dir.path().join("hook-pidns");
    let hook = json!({
        "path": "/bin/sh",
        "args": ["sh", "-c", format!("stat -L -c %i /proc/self/ns/pid >> {}", out.display())],
    });
    let app = env.bundle("app", &["true"], |c| {
        join(c, "pid", &sb_ns);
        c["hooks"] = json!({
            "prestart": [hook.clone()],
            "createRuntime": [hook],
        });
    });
    let o = env.cc(&["create", "--bundle", &app.to_string_lossy(), "app"]);
    assert_ok(&o);
    let runtime = std::fs::metadata("/proc/self/ns/pid").unwrap().ino();
    let sandbox = std::fs::metadata(&sb_ns).unwrap().ino();
    let seen: Vec<u64> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(seen.len(), 2, "both hooks ran: {seen:?}");
    for ns in seen {
        assert_ne!(
            ns, sandbox,
            "a runtime hook ran inside the sandbox's pid namespace, where the sandbox can \
             ptrace or kill it"
        );
        assert_eq!(
            ns, runtime,
            "a runtime hook left the runtime's pid namespace"
        );
    }
}

/// A cgroup path that is another container's live cgroup: adopting it would put the
/// second container's limits on the first and, when the second is deleted (or its create
/// fails), kill every process of the first. As runc: a non-empty cgroup is refused.
#[test]
fn a_cgroups_path_in_use_by_another_container_is_refused() {
    let env = Env::new("cgshare");
    let path = format!("/crabcan-hostile-{}", std::process::id());
    let a = env.bundle("a", &["sh", "-c", LOOP], |c| {
        c["linux"]["cgroupsPath"] = json!(path);
    });
    let a_pid = env.started("victim", &a);
    let b = env.bundle("b", &["true"], |c| {
        c["linux"]["cgroupsPath"] = json!(path);
    });
    let o = env.cc(&["create", "--bundle", &b.to_string_lossy(), "intruder"]);
    let created = o.status.success();
    if created {
        let _ = env.cc(&["delete", "--force", "intruder"]);
    }
    let victim = env.status("victim");
    assert_eq!(
        victim, "running",
        "the other container (pid {a_pid}) was killed by the intruder's delete"
    );
    assert!(
        !created,
        "create adopted the live cgroup {path} of another container"
    );
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("not empty"), "{}", stderr(&o));
}

/// The same, when the intruder's create fails after adopting the cgroup: its cleanup must
/// not kill the owner's processes.
#[test]
fn a_failed_create_on_a_shared_cgroup_path_leaves_the_owner_running() {
    let env = Env::new("cgfail");
    let path = format!("/crabcan-hostile-fail-{}", std::process::id());
    let a = env.bundle("a", &["sh", "-c", LOOP], |c| {
        c["linux"]["cgroupsPath"] = json!(path);
    });
    env.started("victim", &a);
    // A cpu no host has: writing it fails once the cgroup is adopted.
    let b = env.bundle("b", &["true"], |c| {
        c["linux"]["cgroupsPath"] = json!(path);
        c["linux"]["resources"] = json!({"cpu": {"cpus": "4095"}});
    });
    let o = env.cc(&["create", "--bundle", &b.to_string_lossy(), "intruder"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert_eq!(
        env.status("victim"),
        "running",
        "a failed create killed another container sharing its cgroup path"
    );
}

/// net.* sysctls write to the network namespace the container is in. Joining the runtime's
/// own one by path, they would change the host: refused, as runc does.
#[test]
fn net_sysctls_are_refused_in_the_hosts_network_namespace() {
    let env = Env::new("hostnet");
    // The current value: nothing changes on the host even if it is (wrongly) written.
    let key = "net.ipv4.tcp_fin_timeout";
    let v = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_fin_timeout").unwrap();
    let host_ns = format!("/proc/{}/ns/net", std::process::id());
    let b = env.bundle("b", &["true"], |c| {
        join(c, "network", &host_ns);
        c["linux"]["sysctl"] = json!({ key: v.trim() });
    });
    let o = env.cc(&["create", "--bundle", &b.to_string_lossy(), "hostnet"]);
    assert_eq!(
        code(&o),
        1,
        "a net sysctl was accepted in the host's network namespace"
    );
    let e = stderr(&o);
    assert!(e.contains(key) && e.contains("network namespace"), "{e}");
}

/// A namespace path is opened before anything else happens; a path that is a fifo (or any
/// file that blocks on open) must fail create at once, not hang it.
#[test]
fn a_namespace_path_that_is_a_fifo_fails_create_at_once() {
    let env = Env::new("nsfifo");
    let fifo = env.dir.path().join("not-a-namespace");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let id = format!("nsfifo-{}", std::process::id());
    let b = env.bundle("b", &["true"], |c| {
        join(c, "network", &fifo.to_string_lossy());
    });
    let mut child = env
        .cmd(&["create", "--bundle", &b.to_string_lossy(), &id])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = bounded::exits_within(&mut child, Duration::from_secs(10));
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    // Whatever happened, nothing of it stays: the state and the cgroup it made.
    let _ = output_within(&mut env.cmd(&["delete", "--force", &id]), LIMIT);
    let left: Vec<PathBuf> = cgroup_dirs_named(&id);
    for d in &left {
        let _ = std::fs::remove_dir(d);
    }
    let status = status.unwrap_or_else(|| {
        panic!(
            "create still blocked on a fifo namespace path after {:?}",
            started.elapsed()
        )
    });
    assert_eq!(status.code(), Some(1));
    assert!(
        left.is_empty(),
        "cgroups left by the failed create: {left:?}"
    );
}

/// Directories named `name` in any cgroup hierarchy, at most three levels down.
fn cgroup_dirs_named(name: &str) -> Vec<PathBuf> {
    fn walk(d: &Path, name: &str, depth: u32, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let p = e.path();
            if e.file_name() == name {
                out.push(p.clone());
            }
            if depth > 0 {
                walk(&p, name, depth - 1, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(Path::new("/sys/fs/cgroup"), name, 4, &mut out);
    out
}

/// A created container waits for `start` in its own pid namespace, where a pod's other
/// containers may be. A neighbour with CAP_SYS_PTRACE (a debugging sidecar) may open the
/// waiting process's descriptors through /proc/1/fd: none of them may lead to a host
/// directory. Through the state directory it would read the host's files and rewrite
/// state.json, whose poststop hooks `delete` then runs as host root.
#[test]
fn a_waiting_container_holds_no_host_directory_a_neighbour_can_reach() {
    let env = Env::new("waitfd");
    let a = env.bundle("a", &["true"], |_| {});
    let pid_file = a.join("pid");
    assert_ok(&env.cc(&[
        "create",
        "--bundle",
        &a.to_string_lossy(),
        "--pid-file",
        &pid_file.to_string_lossy(),
        "waiting",
    ]));
    let a_pid: i32 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    let ptrace = json!("CAP_SYS_PTRACE");
    let probe = "for f in /proc/1/fd/*; do \
                 if [ -d \"$f\" ]; then echo \"DIR $f: $(ls \"$f\" | tr '\\n' ' ')\"; fi; \
                 done; echo END";
    let b = env.bundle("b", &["sh", "-c", probe], |c| {
        join(c, "pid", &format!("/proc/{a_pid}/ns/pid"));
        for set in ["bounding", "effective", "permitted"] {
            c["process"]["capabilities"][set]
                .as_array_mut()
                .unwrap()
                .push(ptrace.clone());
        }
    });
    let o = env.cc(&["run", "--bundle", &b.to_string_lossy(), "neighbour"]);
    let out = stdout(&o);
    assert!(
        out.contains("END"),
        "the probe did not run: {out}{}",
        stderr(&o)
    );
    assert!(
        !out.contains("DIR"),
        "the waiting container holds a directory descriptor its neighbour reaches: {out}"
    );
}

/// `--preserve-fds N` keeps descriptors 3..3+N for the container. When the caller has fewer
/// open, crabcan's own land in that range (the state directory's lock, the root it opened):
/// the waiting process must not keep them, or it holds the container's lock (and `start`
/// waits for it forever) and host directories until its exec.
#[test]
fn preserved_descriptor_numbers_never_keep_the_runtimes_own() {
    let env = Env::new("preserve");
    let b = env.bundle(
        "b",
        &["sh", "-c", "ls -l /proc/self/fd/ | grep -c -- '->'"],
        |_| {},
    );
    let mut c = env.cmd(&[
        "run",
        "--preserve-fds",
        "8",
        "--bundle",
        &b.to_string_lossy(),
        "pf",
    ]);
    env.made("pf");
    // No descriptor above stdio is open in the caller.
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let status = bounded::exits_within(&mut child, Duration::from_secs(20));
    if status.is_none() {
        // The waiting process holds the lock that start wants: kill both.
        let _ = child.kill();
        let _ = child.wait();
        for pid in processes_with(&b.to_string_lossy()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    assert!(
        status.is_some_and(|s| s.success()),
        "run --preserve-fds 8 did not finish: the container's process kept the state lock"
    );
}

/// Makes `c` start with no descriptor above stdio, whatever the test process inherited.
fn no_inherited_fds(c: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: close_range is async-signal-safe; the closure touches no memory of the
    // parent's. It is called by number: musl's libc crate has no wrapper for it.
    unsafe {
        c.pre_exec(|| {
            if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// Lines `FD n target` for each descriptor 3..=12 the shell running this has open.
const SHOW_FDS: &str = "for n in 3 4 5 6 7 8 9 10 11 12; do \
                        [ -e /proc/$$/fd/$n ] && echo \"FD $n $(readlink /proc/$$/fd/$n)\"; \
                        done; echo END";

/// The exec variant: with `--preserve-fds 8` and no descriptor above stdio open in the
/// caller, the exec'd process must inherit none of crabcan's own (namespace descriptors,
/// the state directory's, the log's) in 3..11: it gets exactly what the caller passed.
#[test]
fn an_exec_with_preserved_descriptor_numbers_inherits_none_of_the_runtimes() {
    let env = Env::new("preserve-exec");
    let b = env.bundle("b", &["sh", "-c", LOOP], |_| {});
    env.started("pfx", &b);
    let mut c = env.cmd(&["exec", "--preserve-fds", "8", "pfx", "sh", "-c", SHOW_FDS]);
    let o = output_within(no_inherited_fds(&mut c), LIMIT);
    assert_ok(&o);
    let out = stdout(&o);
    assert!(out.contains("END"), "the probe did not run: {out}");
    assert!(
        !out.contains("FD "),
        "the exec'd process inherited descriptors the caller never had: {out}"
    );
}

/// A create killed once its cgroup exists leaves a record of it, so that `delete --force`
/// removes the cgroup, and the mount point it made in the root for a bind. The create is
/// held at a point after the cgroup is made: connecting to a console socket whose backlog
/// is full blocks until the engine accepts.
#[test]
fn a_create_killed_after_making_its_cgroup_leaves_nothing_after_delete() {
    let env = Env::new("killcg");
    let id = format!("killcg-{}", std::process::id());
    let sock = env.dir.path().join("console.sock");
    // SAFETY: socket/bind/listen on a fresh descriptor with a valid address.
    let listener = unsafe {
        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0);
        let mut addr: libc::sockaddr_un = std::mem::zeroed();
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        let p = sock.to_string_lossy();
        for (i, b) in p.bytes().enumerate() {
            addr.sun_path[i] = b as libc::c_char;
        }
        let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
        assert_eq!(libc::bind(fd, (&raw const addr).cast(), len), 0);
        assert_eq!(libc::listen(fd, 0), 0);
        std::os::fd::OwnedFd::from_raw_fd(fd)
    };
    use std::os::fd::FromRawFd;
    // Fills the backlog of 0: the next connect blocks.
    let _first = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    // A destination the root lacks: create makes it on the host, and records it.
    let point = format!("made-killcg-{}", std::process::id());
    let b = env.bundle("b", &["true"], |c| {
        c["process"]["terminal"] = json!(true);
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": format!("/{point}"),
            "type": "bind",
            "source": env.dir.path(),
            "options": ["rbind", "ro"],
        }));
    });
    let mut child = env
        .cmd(&[
            "create",
            "--console-socket",
            &sock.to_string_lossy(),
            "--bundle",
            &b.to_string_lossy(),
            &id,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Blocked in connect(2): seen in its wait channel, or its current system call where a
    // kernel hides the former.
    let (wchan, syscall) = (
        format!("/proc/{}/wchan", child.id()),
        format!("/proc/{}/syscall", child.id()),
    );
    let connect = format!("{} ", libc::SYS_connect);
    let blocked = || {
        std::fs::read_to_string(&wchan).is_ok_and(|w| w.contains("unix_wait_for_peer"))
            || std::fs::read_to_string(&syscall).is_ok_and(|s| s.starts_with(&connect))
    };
    let started = Instant::now();
    while !blocked() {
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("create never blocked on the console socket");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let made = cgroup_dirs_named(&id);
    let point_made = rootfs().join(&point).is_dir();
    child.kill().unwrap();
    child.wait().unwrap();
    drop(listener);
    let o = output_within(&mut env.cmd(&["delete", "--force", &id]), LIMIT);
    let left = cgroup_dirs_named(&id);
    for d in &left {
        let _ = std::fs::remove_dir(d);
    }
    let point_left = rootfs().join(&point).exists();
    let _ = std::fs::remove_dir(rootfs().join(&point));
    assert!(!made.is_empty(), "create was held before making its cgroup");
    assert!(point_made, "create was held before making the mount point");
    assert_ok(&o);
    assert!(
        left.is_empty(),
        "cgroups left by a killed create after delete --force: {left:?}"
    );
    assert!(
        !point_left,
        "the mount point a killed create made stays after delete --force"
    );
    assert!(!env.root().join(&id).exists(), "its state directory stays");
}

/// Host only: strace kills create, which the test VM lacks.
///
/// A create killed while it makes the mount points the root lacks (after the first, before
/// the second) has recorded each before making it: `delete --force` removes the one made.
#[test]
fn host_only_a_create_killed_while_making_mount_points_leaves_none_after_delete() {
    let env = Env::new("killprep");
    let id = format!("killprep-{}", std::process::id());
    let names = [1, 2].map(|i| format!("made-killprep-{i}-{}", std::process::id()));
    let b = env.bundle("b", &["true"], |c| {
        for n in &names {
            c["mounts"].as_array_mut().unwrap().push(json!({
                "destination": format!("/{n}"),
                "type": "bind",
                "source": env.dir.path(),
                "options": ["rbind", "ro"],
            }));
        }
    });
    let root = env.root();
    let args: Vec<&std::ffi::OsStr> = [std::ffi::OsStr::new("--root"), root.as_os_str()]
        .into_iter()
        .chain(["create", "--bundle"].map(std::ffi::OsStr::new))
        .chain([b.as_os_str(), std::ffi::OsStr::new(&id)])
        .collect();
    let trace = crabcan_killed_at_second_mkdir_in(&rootfs(), &args);
    let made: Vec<&str> = trace.lines().filter(|l| l.ends_with("= 0")).collect();
    let o = output_within(&mut env.cmd(&["delete", "--force", &id]), LIMIT);
    let left: Vec<&String> = names.iter().filter(|n| rootfs().join(n).exists()).collect();
    for n in &left {
        let _ = std::fs::remove_dir(rootfs().join(n));
    }
    assert!(
        made.len() == 1 && trace.contains("killed by SIGKILL"),
        "create was not killed after making one mount point:\n{trace}"
    );
    assert_ok(&o);
    assert!(
        left.is_empty(),
        "mount points a killed create made stay after delete --force: {left:?}"
    );
    assert!(!env.root().join(&id).exists(), "its state directory stays");
}

/// A bundle whose root path is made a symlink to elsewhere on the host after `create`:
/// `delete` removes nothing there. The mount points it made are named by the root `create`
/// opened (its device and inode in the record), which the path no longer leads to; it
/// leaves them, and says so.
#[test]
fn delete_never_removes_mount_points_through_a_root_path_swapped_after_create() {
    let env = Env::new("swaproot");
    let id = format!("swaproot-{}", std::process::id());
    let point = format!("made-swaproot-{}", std::process::id());
    let link = env.dir.path().join("rootlink");
    std::os::unix::fs::symlink(rootfs(), &link).unwrap();
    let b = env.bundle("b", &["true"], |c| {
        c["root"]["path"] = json!(link);
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": format!("/{point}"),
            "type": "bind",
            "source": env.dir.path(),
            "options": ["rbind", "ro"],
        }));
    });
    assert_ok(&env.cc(&["create", "--bundle", &b.to_string_lossy(), &id]));
    let made = rootfs().join(&point).is_dir();
    // The path now leads to a directory of the host's with the same empty entry.
    let victim = env.dir.path().join("victim");
    std::fs::create_dir_all(victim.join(&point)).unwrap();
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let o = output_within(&mut env.cmd(&["delete", "--force", &id]), LIMIT);
    let survived = victim.join(&point).is_dir();
    let _ = std::fs::remove_dir(rootfs().join(&point));
    assert!(made, "create made no mount point");
    assert!(
        survived,
        "delete removed a directory outside the container's root"
    );
    assert!(
        !o.status.success() && stderr(&o).contains("no longer the root"),
        "{}",
        stderr(&o)
    );
    assert!(!env.root().join(&id).exists(), "its state directory stays");
}

/// A bind entry of `source` (a file) on `destination`.
fn bind_file(source: &Path, destination: &str) -> Value {
    json!({
        "destination": destination,
        "type": "bind",
        "source": source,
        "options": ["bind", "ro"],
    })
}

/// An image's symlink must not send an engine's bind mount onto the fresh /proc: there
/// it would cover a kernel setting (core_pattern is the host's, whatever the namespaces).
/// The files engines legitimately cover (lxcfs's /proc/meminfo) stay allowed.
#[test]
fn a_symlink_in_the_image_cannot_send_a_mount_onto_proc() {
    let env = Env::new("procbind");
    // An image directory with a symlink into /proc, bound in as /mnt/img.
    let img = env.dir.path().join("img");
    std::fs::create_dir_all(&img).unwrap();
    std::os::unix::fs::symlink("/proc/sys/kernel/core_pattern", img.join("resolv.conf")).unwrap();
    let file = env.dir.path().join("engine-file");
    std::fs::write(&file, "nameserver 192.0.2.1\n").unwrap();
    let core_pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();
    let b = env.bundle("b", &["cat", "/proc/sys/kernel/core_pattern"], |c| {
        let m = c["mounts"].as_array_mut().unwrap();
        m.push(json!({
            "destination": "/mnt/img",
            "type": "bind",
            "source": img,
            "options": ["rbind", "rw"],
        }));
        m.push(bind_file(&file, "/mnt/img/resolv.conf"));
    });
    let o = env.cc(&["run", "--bundle", &b.to_string_lossy(), "procbind"]);
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap(),
        core_pattern
    );
    assert_eq!(
        code(&o),
        1,
        "an engine's file was mounted on the container's core_pattern: {}",
        stdout(&o)
    );
    assert!(stderr(&o).contains("procfs"), "{}", stderr(&o));

    // The allowed case: a file over /proc/meminfo, named directly.
    let meminfo = env.dir.path().join("meminfo");
    std::fs::write(&meminfo, "MemTotal: 1 kB\n").unwrap();
    let b = env.bundle("ok", &["cat", "/proc/meminfo"], |c| {
        c["mounts"]
            .as_array_mut()
            .unwrap()
            .push(bind_file(&meminfo, "/proc/meminfo"));
    });
    let o = output_within(
        &mut env.cmd(&["run", "--bundle", &b.to_string_lossy(), "meminfo"]),
        LIMIT,
    );
    env.made("meminfo");
    assert_ok(&o);
    assert_eq!(stdout(&o), "MemTotal: 1 kB\n");
}

/// An image whose /dev is a symlink to proc: the OCI /dev tmpfs must not land on the
/// fresh /proc (hiding it, and what was masked in it); /dev, /proc and /sys are reached
/// without symlinks.
#[test]
fn an_image_dev_symlink_cannot_redirect_the_dev_mount() {
    let env = Env::new("devlink");
    let root = env.dir.path().join("rootfs");
    let st = Command::new("cp")
        .arg("-a")
        .arg(rootfs())
        .arg(&root)
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::remove_dir_all(root.join("dev")).unwrap();
    std::os::unix::fs::symlink("proc", root.join("dev")).unwrap();
    let b = env.bundle("b", &["true"], |c| {
        c["root"]["path"] = json!(root);
    });
    let o = env.cc(&["create", "--bundle", &b.to_string_lossy(), "devlink"]);
    assert_eq!(code(&o), 1, "an image's /dev -> proc was followed");
    assert!(stderr(&o).contains("it is a symlink"), "{}", stderr(&o));
}

/// A uid-0 process with no capability at all reads through `/proc/PID/root` of `pid`:
/// the host's hostname file, or why not.
fn capless_read_root(pid: i32) -> std::process::Output {
    let file = format!("/proc/{pid}/root/etc/hostname");
    bounded::output_within(
        Command::new("setpriv")
            .args(["--inh-caps=-all", "--bounding-set=-all", "--", "cat", &file])
            .stdin(Stdio::null()),
        LIMIT,
    )
}

/// The processes whose parent is `parent`.
fn children_of(parent: i32) -> Vec<i32> {
    // Each thread's children are listed under it (the kernel keeps no list per process).
    let tasks = std::fs::read_dir(format!("/proc/{parent}/task"));
    let mut out = Vec::new();
    for t in tasks.into_iter().flatten().flatten() {
        let text = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
        out.extend(
            text.split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok()),
        );
    }
    out
}

/// Host only: it holds create's window open with strace, which the test VM lacks (and the
/// runtime's clone must be a `clone3`, as it is on kernels since 5.7).
///
/// From its clone until it takes the container's ids and pivots, the process `create` makes
/// in a new user namespace is, to the kernel, that namespace's owner: host root, with every
/// capability in it. Were it dumpable meanwhile, any uid-0 process that sees its pid (a
/// sibling in a pid namespace the config joins, a host-pid workload), even one without a
/// single capability, could go through `/proc/PID/root` to the host's root. The test holds
/// the window open (the runtime's release of the process delayed) and tries.
#[test]
fn host_only_a_process_in_create_is_out_of_reach_before_it_is_released() {
    let env = Env::new("window");
    // The probe itself, on a dumpable process in a user namespace of root's: it gets in.
    let mut control = Command::new("unshare")
        .args(["--user", "--", "sleep", "30"])
        .spawn()
        .unwrap();
    until("the control process in its user namespace", || {
        let ns = std::fs::read_link(format!("/proc/{}/ns/user", control.id())).ok()?;
        (ns != std::fs::read_link("/proc/self/ns/user").unwrap()).then_some(())
    });
    let o = capless_read_root(control.id() as i32);
    let _ = control.kill();
    let _ = control.wait();
    assert!(
        o.status.success(),
        "the probe cannot read even a dumpable process's root: {}",
        stderr(&o)
    );
    let b = env.bundle("b", &["true"], |c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}));
        let map = json!([{"containerID": 0, "hostID": 2_000_000_000u32, "size": 65536}]);
        c["linux"]["uidMappings"] = map.clone();
        c["linux"]["gidMappings"] = map;
    });
    env.made("held");
    // The runtime's clone of the process returns 6 s late: the process exists, waits for
    // its maps and release, and the runtime sleeps.
    let trace = env.dir.path().join("clone3.trace");
    let mut strace = Command::new("strace")
        .args(["-f", "-qq", "-o"])
        .arg(&trace)
        .args(["-e", "trace=clone3"])
        .args(["-e", "inject=clone3:delay_exit=6000000:when=1"])
        .arg(crabcan_bin())
        .arg("--root")
        .arg(env.root())
        .args(["create", "--bundle", &b.to_string_lossy(), "held"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("strace (apt install strace)");
    // The container's process is the one grandchild of strace: strace's first children
    // can be its own short-lived probes of ptrace, so no child is taken for crabcan's
    // before it has a child.
    let deadline = Instant::now() + LIMIT;
    let process = loop {
        let found = children_of(strace.id() as i32)
            .into_iter()
            .find_map(|r| children_of(r).first().copied());
        if let Some(p) = found {
            break p;
        }
        if Instant::now() > deadline {
            let ps = Command::new("ps")
                .args(["-eo", "pid,ppid,stat,args"])
                .output()
                .unwrap();
            panic!(
                "no process of crabcan under strace {} (its children: {:?}); its trace:\n{}\n{}",
                strace.id(),
                children_of(strace.id() as i32),
                std::fs::read_to_string(&trace).unwrap_or_default(),
                String::from_utf8_lossy(&ps.stdout)
                    .lines()
                    .filter(|l| l.contains("crabcan") || l.contains("strace"))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let o = capless_read_root(process);
    // Released after the delay, the container is made as usual; strace ends with the
    // last process it follows, the container's, at its delete.
    until("the container created", || {
        (env.status("held") == "created").then_some(())
    });
    assert_ok(&env.cc(&["delete", "--force", "held"]));
    let status = bounded::wait_within(&mut strace, LIMIT, "strace of crabcan create");
    assert!(
        !o.status.success(),
        "a capability-less uid-0 process read the host's root through the waiting \
         container process: {}",
        stdout(&o)
    );
    assert!(stderr(&o).contains("Permission denied"), "{}", stderr(&o));
    assert!(status.success(), "create under strace: {status:?}");
}

/// The CVE-2024-21626 class: a working directory that leads out of the container's root.
/// Without a pid namespace of its own, the container's /proc shows the host's processes,
/// and an image's symlink to `/proc/<host pid>/cwd` as the working directory would land
/// the command, still root, in a host directory. The process chdirs while it still has
/// its capabilities, so the directory it ends up in is checked: refused, one line, and the
/// command never runs.
#[test]
fn a_working_directory_through_a_host_process_is_refused() {
    let env = Env::new("cwdlink");
    let host = env.dir.path().join("host-dir");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("host-marker"), "").unwrap();
    let mut sleeper = Command::new("sleep")
        .arg("60")
        .current_dir(&host)
        .spawn()
        .unwrap();
    let img = env.dir.path().join("img");
    std::fs::create_dir_all(&img).unwrap();
    std::os::unix::fs::symlink(format!("/proc/{}/cwd", sleeper.id()), img.join("app")).unwrap();
    let b = env.bundle("b", &["sh", "-c", "echo ran; ls"], |c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .retain(|n| n["type"] != "pid" && n["type"] != "user");
        c["process"]["cwd"] = json!("/mnt/img/app");
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/mnt/img",
            "type": "bind",
            "source": img,
            "options": ["rbind", "ro"],
        }));
    });
    let o = env.cc(&["run", "--bundle", &b.to_string_lossy(), "cwdlink"]);
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert!(
        !stdout(&o).contains("host-marker") && !stdout(&o).contains("ran"),
        "the command ran in the host's directory: {}",
        stdout(&o)
    );
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("outside the container's root"),
        "{}",
        stderr(&o)
    );
}

/// Whether a process runs whose command line is exactly `args`.
fn running_with_args(args: &[&str]) -> bool {
    let want: Vec<u8> = args
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == want)
            && std::fs::read_to_string(e.path().join("stat")).is_ok_and(|s| {
                !s.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
    })
}

/// A pid file that cannot be written fails `create` (runc's behaviour) and leaves nothing:
/// not the waiting process, which nobody could start or delete without a record, nor its
/// cgroup, which would refuse the same id ever after.
#[test]
fn a_create_whose_pid_file_cannot_be_written_leaves_nothing() {
    let env = Env::new("pidfile");
    let b = env.bundle("b", &["true"], |_| {});
    let id = format!("pidfile-{}", std::process::id());
    let bad = env.dir.path().join("missing-dir").join("pid");
    let o = env.cc(&[
        "create",
        "--bundle",
        &b.to_string_lossy(),
        "--pid-file",
        &bad.to_string_lossy(),
        &id,
    ]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert_one_line(&o, "pid file");
    assert!(!env.root().join(&id).exists(), "the state directory stayed");
    assert_eq!(
        cgroup_dirs_named(&id),
        Vec::<PathBuf>::new(),
        "cgroups stayed"
    );
    // The id is free again: a second create with a pid file that can be written works.
    env.create(&id, &b);
    assert_ok(&env.cc(&["delete", "--force", &id]));
}

/// The same for `exec`: a command whose pid cannot be handed over does not run on.
#[test]
fn an_exec_whose_pid_file_cannot_be_written_does_not_run_on() {
    let env = Env::new("execpid");
    let b = env.bundle("b", &["sh", "-c", LOOP], |_| {});
    env.started("target", &b);
    let marker = format!("{}", 7000 + std::process::id() % 1000);
    let bad = env.dir.path().join("missing-dir").join("pid");
    let o = env.cc(&[
        "exec",
        "-d",
        "--pid-file",
        &bad.to_string_lossy(),
        "target",
        "sleep",
        &marker,
    ]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let deadline = Instant::now() + Duration::from_secs(10);
    while running_with_args(&["sleep", &marker]) {
        assert!(
            Instant::now() < deadline,
            "the exec'd command runs on though its pid file failed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The killed command was adopted by this test (a subreaper, as an engine is): reaped
    // here, as an engine does, or its pid namespace's init would wait for it at delete.
    while let Ok(s) = nix::sys::wait::waitpid(
        nix::unistd::Pid::from_raw(-1),
        Some(nix::sys::wait::WaitPidFlag::WNOHANG),
    ) {
        if s == nix::sys::wait::WaitStatus::StillAlive {
            break;
        }
    }
}

/// A created container cannot be paused (its status is its fifo's, and its process waits
/// in the fifo's open); one whose cgroup was frozen by hand is still deleted at once.
#[test]
fn a_created_container_is_never_wedged_by_its_freezer() {
    let env = Env::new("frozen");
    let b = env.bundle("b", &["true"], |_| {});
    env.create("frozen", &b);
    let o = env.cc(&["pause", "frozen"]);
    assert_eq!(code(&o), 1);
    assert_one_line(&o, "has not started");
    // Frozen by hand, through its freezer: v1's freezer.state, or v2's cgroup.freeze.
    let dirs = env.cgroup_dirs("frozen");
    let freezer = dirs
        .iter()
        .find(|d| d.join("freezer.state").exists())
        .map(|d| (d.clone(), "freezer.state", "FROZEN"))
        .or_else(|| {
            dirs.iter()
                .find(|d| d.join("cgroup.freeze").exists())
                .map(|d| (d.clone(), "cgroup.freeze", "1"))
        })
        .expect("a freezer (v1 freezer.state or v2 cgroup.freeze)");
    std::fs::write(freezer.0.join(freezer.1), freezer.2).unwrap();
    let freezer = freezer.0;
    let started = Instant::now();
    assert_ok(&env.cc(&["delete", "--force", "frozen"]));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "delete took {:?}",
        started.elapsed()
    );
    assert!(!freezer.exists());
}

/// A bundle whose process runs a startContainer hook sleeping `seconds` before its command.
fn sleeping_hook(c: &mut Value, seconds: &str) {
    c["hooks"] = json!({"startContainer": [{"path": "/bin/sleep", "args": ["sleep", seconds]}]});
}

/// Waits for a spawned crabcan whose stderr is piped: its status and what it said.
fn status_and_stderr(
    child: &mut std::process::Child,
    what: &str,
) -> (std::process::ExitStatus, String) {
    let status = bounded::wait_within(child, LIMIT, what);
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    (status, err)
}

/// `start` waits for a process that is slow to take its end of the fifo (a loaded
/// machine, or a stopped process): it never takes the wait for a failure.
#[test]
fn start_waits_for_a_process_slow_to_answer() {
    let env = Env::new("slowstart");
    let b = env.bundle("b", &["true"], |_| {});
    let pid = env.create("slow", &b);
    let stopped = nix::unistd::Pid::from_raw(pid);
    nix::sys::signal::kill(stopped, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let mut start = env
        .cmd(&["start", "slow"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    let early = start.try_wait().unwrap();
    nix::sys::signal::kill(stopped, nix::sys::signal::Signal::SIGCONT).unwrap();
    let (status, err) = status_and_stderr(&mut start, "start");
    assert_eq!(early, None, "start gave up on a stopped process: {err}");
    assert!(status.success(), "{err}");
}

/// `start` waits for the container's startContainer hooks, which run in the container:
/// a hook that hangs must not keep `kill` and `delete --force` from the container.
#[test]
fn a_hanging_start_hook_does_not_hold_kill_or_delete() {
    let env = Env::new("hookhang");
    let b = env.bundle("b", &["true"], |c| sleeping_hook(c, "600"));
    env.create("hang", &b);
    let mut start = env
        .cmd(&["start", "hang"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The hook runs once start has let the process go on.
    std::thread::sleep(Duration::from_millis(300));
    let began = Instant::now();
    let o = output_within(
        &mut env.cmd(&["kill", "hang", "KILL"]),
        Duration::from_secs(10),
    );
    assert_ok(&o);
    let o = output_within(
        &mut env.cmd(&["delete", "--force", "hang"]),
        Duration::from_secs(10),
    );
    assert_ok(&o);
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );
    let status = bounded::wait_within(&mut start, LIMIT, "start");
    assert!(
        !status.success(),
        "start reported a start of a killed container"
    );
    assert!(!env.root().join("hang").exists());
}

/// Two starts at once, while the process runs a startContainer hook: one starts it, the
/// other is refused at once, and the first is not made to report a failure by a second
/// reader of the fifo taking the process's byte.
#[test]
fn a_second_start_during_the_hooks_is_refused() {
    let env = Env::new("twostarts");
    let b = env.bundle("b", &["true"], |c| sleeping_hook(c, "1"));
    env.create("two", &b);
    let mut first = env
        .cmd(&["start", "two"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let second = output_within(&mut env.cmd(&["start", "two"]), Duration::from_secs(10));
    let (status, err) = status_and_stderr(&mut first, "start");
    assert!(status.success(), "the first start failed: {err}");
    assert_eq!(code(&second), 1, "{}", stderr(&second));
    assert_one_line(&second, "already running");
}
