//! `crabcan-floor ROOTFS COMMAND [ARG…]`: the least a container start must do to match what
//! crabcan's default `run` sets up as root, and nothing more, for the benchmark's floor row.
//!
//! It clones one process into new user, mount, UTS, PID, IPC and network namespaces; the
//! parent writes a 65536-id map (no setgroups denial, as for root) and makes an idmapped
//! clone of the root tree for the child's user namespace, handed over on a socket; the child
//! takes root's ids, mounts that tree, `/proc` and a `/dev` tmpfs with the six standard
//! nodes bound in, pivots into it, and, as PID 1, forks the command and waits for it.
//! What crabcan does beyond this (cgroups, seccomp, capabilities, masked paths, sysfs,
//! devpts, shm, hostname, loopback, its id-range lease and guardian) is not here: the ratio
//! crabcan / floor is their cost. A static musl binary, like crabcan's release build.
//!
//! `crabcan-floor --cgroups ROOTFS COMMAND…` adds the cgroup work crabcan's default run does
//! as root: a cgroup in every controller hierarchy (v1 and v2) below the caller's own, with
//! cpuset copied from the parent, a pids limit and the device rules, a cgroup namespace, and
//! the cgroups removed at the end; so the kernel's share of that work can be told from
//! crabcan's. The process enters them as crabcan's does, by itself, before it runs: cloned
//! with `clone3`'s `CLONE_INTO_CGROUP` into the v2 directory, and writing `0` into each v1
//! hierarchy's `tasks` file (opened by the parent) first thing.
//!
//! `crabcan-floor --full ROOTFS COMMAND…` adds to that the rest of the kernel-visible setup
//! of crabcan's default run, each piece the cheapest plain way: the hostname, a nodev root,
//! read-only device nodes, a read-only sysfs, devpts with the `/dev/ptmx` link, a `/dev/shm`
//! tmpfs, the `/dev` links, the masked paths (a read-only `/dev/null` over files, an empty
//! read-only tmpfs over directories), the read-only `/proc` paths, loopback up, and in the
//! command's process the capability bounding set and sets, no_new_privs and crabcan's
//! default seccomp filter just before exec. The lists (masked and read-only paths, `/dev`
//! links, capabilities) and the filter program are crabcan's own, taken as data: the kernel
//! does the same work for them. What is left between this and `crabcan run` is crabcan's
//! own cost (its process architecture, id-range lease, state, parsing and planning).

use std::ffi::{CStr, CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;

/// The first host id of the map: outside any range crabcan leases (which start at 2^31+2^30).
const ID_BASE: u32 = 0xC000_0000 - 0x1_0000;
/// The device nodes crabcan binds into its `/dev`.
const NODES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// The hostname `--full` sets (crabcan's default is a random one of similar length).
const HOSTNAME: &str = "crabcan-floor";

fn main() -> ExitCode {
    let mut args: Vec<_> = std::env::args_os().skip(1).collect();
    let full = args.first().is_some_and(|a| a == "--full");
    let cgroups = full || args.first().is_some_and(|a| a == "--cgroups");
    if cgroups {
        args.remove(0);
    }
    if args.len() < 2 {
        eprintln!("usage: crabcan-floor [--cgroups | --full] ROOTFS COMMAND [ARG…]");
        return ExitCode::from(125);
    }
    let groups: Vec<Group> = if cgroups {
        match make_cgroups() {
            Ok(g) => g,
            Err(e) => {
                eprintln!("crabcan-floor: {e}");
                return ExitCode::from(125);
            }
        }
    } else {
        Vec::new()
    };
    let result = run(&args[0], &args[1..], &groups, full);
    for g in groups.iter().rev() {
        // A cgroup emptied a moment ago can still be busy while its last task is reaped.
        for _ in 0..100 {
            if std::fs::remove_dir(&g.dir).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("crabcan-floor: {e}");
            ExitCode::from(125)
        }
    }
}

fn c(s: impl AsRef<OsStr>) -> Result<CString, String> {
    CString::new(s.as_ref().as_bytes()).map_err(|_| "a path holds a NUL byte".to_string())
}

fn check(r: libc::c_long, what: &str) -> Result<libc::c_long, String> {
    if r < 0 {
        Err(format!("{what}: {}", std::io::Error::last_os_error()))
    } else {
        Ok(r)
    }
}

/// Everything the child needs, as C strings made before the clone.
struct Paths {
    root: CString,
    proc_: CString,
    dev: CString,
    nodes: Vec<(CString, CString)>,
    argv: Vec<CString>,
    /// Whether the child makes a cgroup namespace (rooted in the cgroups it was placed in).
    cgroup_ns: bool,
    /// The rest of crabcan's default setup (`--full`).
    full: Option<Full>,
}

/// What `--full` adds, as C strings and data made before the clone. Paths are the host's
/// names inside the root: the child sets everything up before `pivot_root`, as crabcan does.
struct Full {
    hostname: CString,
    sys: CString,
    pts: CString,
    shm: CString,
    /// The container's read-only `/dev/null`, bound over masked files.
    null: CString,
    /// (target, link) of each `/dev` symlink.
    links: Vec<(CString, CString)>,
    masked: Vec<CString>,
    read_only: Vec<CString>,
    /// The capabilities kept in the bounding, effective and permitted sets.
    keep: u64,
    filter: crabcan_security::Compiled,
}

impl Full {
    fn new(root: &std::path::Path) -> Result<Full, String> {
        let inside = |p: &str| c(root.join(p.trim_start_matches('/')));
        Ok(Full {
            hostname: c(HOSTNAME)?,
            sys: inside("/sys")?,
            pts: inside("/dev/pts")?,
            shm: inside("/dev/shm")?,
            null: inside("/dev/null")?,
            links: crabcan_mounts::DEV_SYMLINKS
                .iter()
                .map(|(link, target)| Ok((c(target)?, inside(link)?)))
                .collect::<Result<_, String>>()?,
            masked: crabcan_mounts::MASKED_PATHS
                .iter()
                .map(|p| inside(p))
                .collect::<Result<_, String>>()?,
            read_only: crabcan_mounts::READONLY_PATHS
                .iter()
                .map(|p| inside(p))
                .collect::<Result<_, String>>()?,
            keep: crabcan_security::DEFAULT_CAPS
                .iter()
                .fold(0, |m, cap| m | 1u64 << cap.number()),
            filter: crabcan_security::profile::crabcan_default_program(),
        })
    }
}

/// The descriptors the child enters its cgroups with, opened by the parent: each v1
/// hierarchy's `tasks` file and the v2 directory.
struct Entry {
    v1_tasks: Vec<i32>,
    v2_dir: Option<i32>,
}

impl Entry {
    fn open(groups: &[Group]) -> Result<Entry, String> {
        let mut e = Entry {
            v1_tasks: Vec::new(),
            v2_dir: None,
        };
        for g in groups {
            let (path, flags) = if g.v2 {
                (g.dir.clone(), libc::O_DIRECTORY | libc::O_RDONLY)
            } else {
                (g.dir.join("tasks"), libc::O_WRONLY)
            };
            let cpath = c(&path)?;
            // SAFETY: open(2) on a NUL-terminated path that outlives the call.
            let fd = unsafe { libc::open(cpath.as_ptr(), flags | libc::O_CLOEXEC) };
            let fd = check(fd.into(), &format!("open {}", path.display()))? as i32;
            if g.v2 {
                e.v2_dir = Some(fd);
            } else {
                e.v1_tasks.push(fd);
            }
        }
        Ok(e)
    }

    /// Moves the calling (single-threaded) process into each v1 hierarchy, and into the v2
    /// one unless it was cloned there; then closes the descriptors.
    fn enter(&self, in_v2: bool) -> Result<(), String> {
        let write0 = |fd: i32, what: &str| {
            // SAFETY: writes one byte from a live static buffer to a descriptor we own.
            let r = unsafe { libc::write(fd, c"0".as_ptr().cast(), 1) };
            check(r as libc::c_long, what).map(|_| ())
        };
        for &fd in &self.v1_tasks {
            write0(fd, "enter a v1 cgroup (write tasks)")?;
        }
        if !in_v2 && let Some(dir) = self.v2_dir {
            // SAFETY: openat(2) relative to a directory descriptor we own, on a C string.
            let procs = unsafe {
                libc::openat(
                    dir,
                    c"cgroup.procs".as_ptr(),
                    libc::O_WRONLY | libc::O_CLOEXEC,
                )
            };
            let procs = check(procs.into(), "open the v2 cgroup.procs")? as i32;
            write0(procs, "enter the v2 cgroup (write cgroup.procs)")?;
            // SAFETY: the descriptor just opened, not used again.
            unsafe { libc::close(procs) };
        }
        self.close();
        Ok(())
    }

    fn close(&self) {
        for &fd in self.v1_tasks.iter().chain(self.v2_dir.iter()) {
            // SAFETY: descriptors this value opened, not used after this.
            unsafe { libc::close(fd) };
        }
    }
}

/// `CLONE_INTO_CGROUP` (linux/sched.h, Linux 5.7).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Forks into new namespaces, and into the v2 cgroup `cgroup` when given and the kernel
/// allows it (`clone3`); returns the pid (0 in the child) and whether it went there.
fn fork_into(flags: libc::c_int, cgroup: Option<i32>) -> Result<(libc::pid_t, bool), String> {
    if let Some(dir) = cgroup {
        let args = libc::clone_args {
            flags: flags as u32 as u64 | CLONE_INTO_CGROUP,
            pidfd: 0,
            child_tid: 0,
            parent_tid: 0,
            exit_signal: libc::SIGCHLD as u64,
            stack: 0,
            stack_size: 0,
            tls: 0,
            set_tid: 0,
            set_tid_size: 0,
            cgroup: dir as u64,
        };
        // SAFETY: a complete clone_args that lives through the call, its size given; without
        // a new stack or CLONE_VM this is a fork, and this program is single-threaded.
        let pid = unsafe {
            libc::syscall(
                libc::SYS_clone3,
                &args as *const libc::clone_args,
                size_of::<libc::clone_args>(),
            )
        };
        if pid >= 0 {
            return Ok((pid as libc::pid_t, true));
        }
        let e = std::io::Error::last_os_error();
        // A kernel without clone3 or CLONE_INTO_CGROUP: the classic way, as crabcan.
        if !matches!(
            e.raw_os_error(),
            Some(libc::ENOSYS | libc::E2BIG | libc::EINVAL)
        ) {
            return Err(format!("clone3: {e}"));
        }
    }
    // SAFETY: a clone without a new stack and without CLONE_VM is a fork into new namespaces;
    // this program is single-threaded, so the child may go on with a copy of its memory.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    Ok((check(pid, "clone")? as libc::pid_t, false))
}

/// The device rules crabcan applies to root's containers (cgroup v1 devices controller).
const DEVICE_RULES: [&str; 8] = [
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
];

/// One cgroup made for the run.
struct Group {
    dir: std::path::PathBuf,
    /// In the cgroup v2 hierarchy (else a v1 one).
    v2: bool,
}

/// One cgroup per controller hierarchy, below this process's own, set up as crabcan does.
fn make_cgroups() -> Result<Vec<Group>, String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("cannot read mountinfo: {e}"))?;
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
    let name = format!("crabcan-floor-{}", std::process::id());
    let mut made = Vec::new();
    for line in own.lines() {
        let mut f = line.splitn(3, ':');
        let (_, controllers, path) = match (f.next(), f.next(), f.next()) {
            (Some(a), Some(b), Some(c)) => (a, b, c),
            _ => continue,
        };
        if controllers.starts_with("name=") {
            continue;
        }
        // The hierarchy's mount: cgroup2 for "", else the v1 mount carrying these controllers.
        let mount = info.lines().find_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let mut p = post.split(' ');
            let fstype = p.next()?;
            let opts = p.nth(1)?;
            let point = pre.split(' ').nth(4)?;
            let fits = if controllers.is_empty() {
                fstype == "cgroup2"
            } else {
                fstype == "cgroup"
                    && controllers
                        .split(',')
                        .all(|c| opts.split(',').any(|o| o == c))
            };
            fits.then(|| std::path::PathBuf::from(point))
        });
        let Some(mount) = mount else { continue };
        let dir = mount.join(path.trim_start_matches('/')).join(&name);
        std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        made.push(Group {
            dir: dir.clone(),
            v2: controllers.is_empty(),
        });
        let write = |file: &str, text: &str| {
            std::fs::write(dir.join(file), text)
                .map_err(|e| format!("cannot write {}: {e}", dir.join(file).display()))
        };
        let split: Vec<&str> = controllers.split(',').collect();
        if split.contains(&"cpuset") {
            for file in ["cpuset.cpus", "cpuset.mems"] {
                let parent = std::fs::read_to_string(dir.parent().unwrap_or(&dir).join(file))
                    .unwrap_or_default();
                write(file, parent.trim())?;
            }
        }
        if split.contains(&"pids") {
            write("pids.max", "4096")?;
        }
        if split.contains(&"devices") {
            write("devices.deny", "a")?;
            for rule in DEVICE_RULES {
                write("devices.allow", rule)?;
            }
        }
    }
    Ok(made)
}

fn run(
    rootfs: &OsStr,
    command: &[std::ffi::OsString],
    cgroups: &[Group],
    full: bool,
) -> Result<u8, String> {
    let root = std::fs::canonicalize(rootfs)
        .map_err(|e| format!("cannot resolve {}: {e}", rootfs.to_string_lossy()))?;
    let paths = Paths {
        root: c(&root)?,
        proc_: c(root.join("proc"))?,
        dev: c(root.join("dev"))?,
        nodes: NODES
            .iter()
            .map(|n| Ok((c(format!("/dev/{n}"))?, c(root.join("dev").join(n))?)))
            .collect::<Result<_, String>>()?,
        argv: command.iter().map(c).collect::<Result<_, String>>()?,
        cgroup_ns: !cgroups.is_empty(),
        full: if full { Some(Full::new(&root)?) } else { None },
    };
    let mut pair = [0; 2];
    // SAFETY: socketpair writes two descriptors into the live array.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            pair.as_mut_ptr(),
        )
    };
    check(r.into(), "socketpair")?;
    let flags = libc::CLONE_NEWUSER
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWNET;
    let entry = Entry::open(cgroups)?;
    let (pid, in_v2) = fork_into(flags, entry.v2_dir)?;
    if pid == 0 {
        // SAFETY: closing our copy of the parent's end, which the child never uses.
        unsafe { libc::close(pair[0]) };
        let e = entry
            .enter(in_v2)
            .and_then(|()| child(&paths, pair[1]))
            .unwrap_err();
        eprintln!("crabcan-floor: {e}");
        // SAFETY: _exit ends the child without running the parent's exit handlers.
        unsafe { libc::_exit(125) };
    }
    // SAFETY: the child's end is the child's.
    unsafe { libc::close(pair[1]) };
    entry.close();
    let handed = parent(pid, &paths, pair[0]);
    let mut status = 0;
    // SAFETY: waits for our own child into a live local.
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0 {
        if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return Err(format!("waitpid: {}", std::io::Error::last_os_error()));
        }
    }
    handed?;
    Ok(if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status) as u8
    } else {
        128 + libc::WTERMSIG(status) as u8
    })
}

/// The id maps, the idmapped root tree, and the go (with the tree) on the socket.
fn parent(pid: libc::pid_t, p: &Paths, sock: i32) -> Result<(), String> {
    let map = format!("0 {ID_BASE} 65536\n");
    for file in ["uid_map", "gid_map"] {
        std::fs::write(format!("/proc/{pid}/{file}"), &map)
            .map_err(|e| format!("cannot write {file}: {e}"))?;
    }
    let userns = std::fs::File::open(format!("/proc/{pid}/ns/user"))
        .map_err(|e| format!("cannot open the child's user namespace: {e}"))?;
    // SAFETY: open_tree takes a C string path and flags; it returns a new descriptor.
    let tree = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            p.root.as_ptr(),
            libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC | libc::AT_RECURSIVE as libc::c_uint,
        )
    };
    let tree = check(tree, "open_tree of the root")? as i32;
    // crabcan's root is nodev too (device nodes shipped in an image must not open): the
    // same call sets it.
    let nodev = if p.full.is_some() {
        libc::MOUNT_ATTR_NODEV
    } else {
        0
    };
    let attr = libc::mount_attr {
        attr_set: libc::MOUNT_ATTR_IDMAP | nodev,
        attr_clr: 0,
        propagation: 0,
        userns_fd: std::os::fd::AsRawFd::as_raw_fd(&userns) as u64,
    };
    // SAFETY: mount_setattr reads `attr`, a live properly laid out struct, of the size given.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree,
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_RECURSIVE,
            &attr as *const libc::mount_attr,
            size_of::<libc::mount_attr>(),
        )
    };
    check(r, "idmap the root (mount_setattr)")?;
    send_fd(sock, tree)
}

fn send_fd(sock: i32, fd: i32) -> Result<(), String> {
    with_fd_message(b'g', |msg| {
        // SAFETY: the header points at a control buffer with room for one descriptor's message.
        unsafe {
            let cm = libc::CMSG_FIRSTHDR(msg);
            (*cm).cmsg_level = libc::SOL_SOCKET;
            (*cm).cmsg_type = libc::SCM_RIGHTS;
            (*cm).cmsg_len = libc::CMSG_LEN(size_of::<i32>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(cm).cast::<i32>(), fd);
        }
        // SAFETY: every pointer in `msg` is to live locals of `with_fd_message`.
        check(unsafe { libc::sendmsg(sock, msg, 0) } as _, "send the go")?;
        Ok(())
    })
}

fn recv_fd(sock: i32) -> Result<i32, String> {
    with_fd_message(0, |msg| {
        // SAFETY: every pointer in `msg` is to live locals of `with_fd_message`.
        let n = check(
            unsafe { libc::recvmsg(sock, msg, 0) } as _,
            "wait for the go",
        )?;
        // SAFETY: the kernel filled the control buffer the header points at.
        let cm = unsafe { libc::CMSG_FIRSTHDR(msg) };
        if n == 0 || cm.is_null() {
            return Err("the parent sent no root tree".into());
        }
        // SAFETY: a non-null first header of an SCM_RIGHTS message carries one descriptor.
        Ok(unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cm).cast::<i32>()) })
    })
}

/// Calls `f` with a message header for one byte (`byte`, or what is received) and a control
/// buffer with room for one descriptor; the buffers live until `f` returns.
fn with_fd_message<T>(byte: u8, f: impl FnOnce(&mut libc::msghdr) -> T) -> T {
    let mut byte = [byte];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // SAFETY: CMSG_SPACE is arithmetic.
    let space = unsafe { libc::CMSG_SPACE(size_of::<i32>() as u32) } as usize;
    let mut cbuf = vec![0u8; space];
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    f(&mut msg)
}

fn sys(r: libc::c_int, what: &str) -> Result<(), String> {
    check(r.into(), what).map(|_| ())
}

/// mount(2), with the kernel's error as it is.
fn mount_raw(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> std::io::Result<()> {
    let ptr = |s: Option<&CStr>| s.map_or(std::ptr::null(), CStr::as_ptr);
    // SAFETY: every pointer is null or a NUL-terminated string that outlives the call.
    let r = unsafe {
        libc::mount(
            ptr(source),
            target.as_ptr(),
            ptr(fstype),
            flags,
            ptr(data).cast(),
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// mount(2); `what` names it in the error.
fn mount(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
    what: &str,
) -> Result<(), String> {
    mount_raw(source, target, fstype, flags, data).map_err(|e| format!("{what}: {e}"))
}

/// Makes the attached mount at `path` read-only (and every mount below it when `recursive`)
/// with mount_setattr(2), which leaves the attributes the kernel locked on a mount copied
/// into a user namespace's mount namespace alone (a `MS_REMOUNT` would have to repeat them).
fn set_read_only(path: &CStr, recursive: bool) -> std::io::Result<()> {
    let attr = libc::mount_attr {
        attr_set: libc::MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let flags = if recursive { libc::AT_RECURSIVE } else { 0 };
    // SAFETY: mount_setattr reads `attr`, a live properly laid out struct, of the size given,
    // and a NUL-terminated path.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            flags,
            &attr as *const libc::mount_attr,
            size_of::<libc::mount_attr>(),
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `what` failed on `path`, as one line.
fn on(what: &str, path: &CStr, e: std::io::Error) -> String {
    format!("{what} {}: {e}", path.to_string_lossy())
}

/// Root's ids, the root tree, `/proc`, `/dev`, `pivot_root`, then the init forks the command;
/// with `--full`, the rest of crabcan's setup in its order, and the command's confinement.
fn child(p: &Paths, sock: i32) -> Result<(), String> {
    let tree = recv_fd(sock)?;
    // SAFETY: raw system calls on C strings made before the clone and on live locals; the
    // process is single-threaded.
    unsafe {
        sys(libc::setresgid(0, 0, 0), "setresgid")?;
        sys(libc::setresuid(0, 0, 0), "setresuid")?;
        if p.cgroup_ns {
            sys(
                libc::unshare(libc::CLONE_NEWCGROUP),
                "unshare the cgroup namespace",
            )?;
        }
        if let Some(f) = &p.full {
            sys(
                libc::sethostname(f.hostname.as_ptr(), f.hostname.as_bytes().len()),
                "sethostname",
            )?;
        }
        mount(
            None,
            c"/",
            None,
            libc::MS_REC | libc::MS_PRIVATE,
            None,
            "make / private",
        )?;
        let r = libc::syscall(
            libc::SYS_move_mount,
            tree,
            c"".as_ptr(),
            libc::AT_FDCWD,
            p.root.as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH,
        );
        check(r, "mount the root (move_mount)")?;
        let nodev = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
        mount(
            Some(c"proc"),
            &p.proc_,
            Some(c"proc"),
            nodev,
            None,
            "mount /proc",
        )?;
        if let Some(f) = &p.full {
            mount(
                Some(c"sysfs"),
                &f.sys,
                Some(c"sysfs"),
                nodev | libc::MS_RDONLY,
                None,
                "mount /sys",
            )?;
        }
        // crabcan's /dev options when the rest of its setup is asked for.
        let (dev_flags, dev_data) = match p.full {
            Some(_) => (libc::MS_STRICTATIME, c"mode=755,size=65536k"),
            None => (0, c"mode=755"),
        };
        mount(
            Some(c"tmpfs"),
            &p.dev,
            Some(c"tmpfs"),
            libc::MS_NOSUID | libc::MS_NOEXEC | dev_flags,
            Some(dev_data),
            "mount /dev",
        )?;
        for (host, inside) in &p.nodes {
            let fd = libc::open(
                inside.as_ptr(),
                libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                0o666,
            );
            sys(fd, "create a /dev node's mount point")?;
            libc::close(fd);
            mount(
                Some(host),
                inside,
                None,
                libc::MS_BIND,
                None,
                "bind a /dev node",
            )?;
            // Read-only, as crabcan's: else container root could chmod the host's node.
            if p.full.is_some() {
                set_read_only(inside, false).map_err(|e| on("make read-only", inside, e))?;
            }
        }
        if let Some(f) = &p.full {
            dev_and_proc(f)?;
        }
        sys(libc::chdir(p.root.as_ptr()), "chdir to the root")?;
        let r = libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr());
        check(r, "pivot_root")?;
        sys(
            libc::umount2(c".".as_ptr(), libc::MNT_DETACH),
            "detach the old root",
        )?;
        sys(libc::chdir(c"/".as_ptr()), "chdir /")?;
        if p.full.is_some() {
            loopback_up()?;
        }
        // The init: PID 1 forks the command and ends with its status.
        let cmd = libc::fork();
        sys(cmd, "fork the command")?;
        if cmd == 0 {
            if let Some(f) = &p.full
                && let Err(e) = confine(f)
            {
                eprintln!("crabcan-floor: {e}");
                libc::_exit(125);
            }
            let mut argv: Vec<*const libc::c_char> = p.argv.iter().map(|a| a.as_ptr()).collect();
            argv.push(std::ptr::null());
            let envp = [c"PATH=/bin:/usr/bin".as_ptr(), std::ptr::null()];
            libc::execve(argv[0], argv.as_ptr(), envp.as_ptr());
            eprintln!(
                "crabcan-floor: exec {}: {}",
                p.argv[0].to_string_lossy(),
                std::io::Error::last_os_error()
            );
            libc::_exit(127);
        }
        let mut status = 0;
        while libc::waitpid(cmd, &mut status, 0) < 0 {}
        libc::_exit(if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            128 + libc::WTERMSIG(status)
        });
    }
}

/// `--full`'s part of the mounts, after the device nodes and before `pivot_root`, in
/// crabcan's order: devpts, shm, the `/dev` links, the masked paths, the read-only paths.
/// Paths that do not exist are neither masked nor made read-only, as crabcan's.
fn dev_and_proc(f: &Full) -> Result<(), String> {
    let hardened = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    let mkdir = |path: &CStr, mode: libc::mode_t| {
        // SAFETY: mkdir(2) on a NUL-terminated path that outlives the call.
        let r = unsafe { libc::mkdir(path.as_ptr(), mode) };
        sys(r, "mkdir").map_err(|e| format!("{e} ({})", path.to_string_lossy()))
    };
    mkdir(&f.pts, 0o755)?;
    mount(
        Some(c"devpts"),
        &f.pts,
        Some(c"devpts"),
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some(c"newinstance,ptmxmode=0666,mode=0620"),
        "mount /dev/pts",
    )?;
    mkdir(&f.shm, 0o1777)?;
    mount(
        Some(c"shm"),
        &f.shm,
        Some(c"tmpfs"),
        hardened,
        Some(c"mode=1777,size=65536k"),
        "mount /dev/shm",
    )?;
    for (target, link) in &f.links {
        // SAFETY: symlink(2) on NUL-terminated strings that outlive the call.
        let r = unsafe { libc::symlink(target.as_ptr(), link.as_ptr()) };
        sys(r, "symlink").map_err(|e| format!("{e} ({})", link.to_string_lossy()))?;
    }
    for path in &f.masked {
        // SAFETY: stat is plain data; all zero is a valid value, and stat(2) fills it.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: stat(2) on a NUL-terminated path into a live local.
        if unsafe { libc::stat(path.as_ptr(), &mut st) } < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::NotFound {
                continue;
            }
            return Err(on("mask", path, e));
        }
        let r = if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            mount_raw(
                Some(c"tmpfs"),
                path,
                Some(c"tmpfs"),
                hardened | libc::MS_RDONLY,
                Some(c"size=0,mode=555"),
            )
        } else {
            // A bind of the container's /dev/null, itself a read-only bind: the copy keeps
            // its read-only flag, so one call masks a file.
            mount_raw(Some(&f.null), path, None, libc::MS_BIND, None)
        };
        r.map_err(|e| on("mask", path, e))?;
    }
    for path in &f.read_only {
        match mount_raw(Some(path), path, None, libc::MS_BIND | libc::MS_REC, None) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            r => r.map_err(|e| on("bind for read-only", path, e))?,
        }
        set_read_only(path, true).map_err(|e| on("make read-only", path, e))?;
    }
    Ok(())
}

/// Sets `lo` up in the new network namespace (it starts down).
fn loopback_up() -> Result<(), String> {
    let what = "bring up lo";
    // SAFETY: socket(2) takes integers only.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    sys(sock, what)?;
    // SAFETY: ifreq is plain data; all zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: ioctls on our socket with a live ifreq naming lo; the kernel fills the flags
    // on the first, which the second sets with IFF_UP added.
    let r = unsafe {
        let mut r = libc::ioctl(sock, libc::SIOCGIFFLAGS as _, &mut req);
        if r == 0 {
            req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            r = libc::ioctl(sock, libc::SIOCSIFFLAGS as _, &req);
        }
        let r = check(r.into(), what);
        libc::close(sock);
        r
    };
    r.map(|_| ())
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct`: one half (32 capabilities) of each set.
#[repr(C)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// The command's confinement as crabcan's default applies it, last before exec: every
/// capability not kept dropped from the bounding set, the kept ones effective and
/// permitted (none inheritable), no_new_privs, then the seccomp filter.
fn confine(f: &Full) -> Result<(), String> {
    for n in 0..64u8 {
        if f.keep & (1 << n) != 0 {
            continue;
        }
        // SAFETY: PR_CAPBSET_DROP takes a capability number and touches only kernel state.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(n), 0, 0, 0) } != 0 {
            let e = std::io::Error::last_os_error();
            // EINVAL: past the kernel's last capability, so the set is done.
            if e.raw_os_error() == Some(libc::EINVAL) {
                break;
            }
            return Err(format!("drop capability {n} from the bounding set: {e}"));
        }
    }
    let mut hdr = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [f.keep as u32, (f.keep >> 32) as u32].map(|half| CapData {
        effective: half,
        permitted: half,
        inheritable: 0,
    });
    // SAFETY: version 3 takes a header and two data structs, both live for the call.
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut hdr, data.as_ptr()) };
    check(r, "capset")?;
    // SAFETY: PR_SET_NO_NEW_PRIVS takes integers only.
    let r = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    sys(r, "set no_new_privs")?;
    let insns = &f.filter.instructions;
    let prog = libc::sock_fprog {
        len: u16::try_from(insns.len()).map_err(|_| "the seccomp program is too long")?,
        // The kernel only reads through this pointer; BpfInsn has sock_filter's layout.
        filter: insns.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: seccomp(2) reads the program the live `prog` points at.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            f.filter.flag_bits(),
            &prog as *const libc::sock_fprog,
        )
    };
    check(r, "load the seccomp filter").map(|_| ())
}
