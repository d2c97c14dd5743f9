//! Escape attempts through privileged system calls, namespaces, processes and devices.

use std::os::fd::AsRawFd;

use crate::sys::{self, Errno, en, ret, reti, show};
use crate::{Verdict, gate};

/// A raw syscall with up to six arguments, its result carrying the errno.
fn call(nr: libc::c_long, a: &[libc::c_long]) -> sys::SysResult {
    let g = |i: usize| a.get(i).copied().unwrap_or(0);
    // SAFETY: each caller passes arguments valid for its syscall (pointers to live
    // buffers, or plain integers); missing trailing arguments are zero.
    ret(unsafe { libc::syscall(nr, g(0), g(1), g(2), g(3), g(4), g(5)) })
}

fn ptr<T>(p: *const T) -> libc::c_long {
    p as libc::c_long
}

/// reboot: reboot() with a wrong first magic number. The kernel checks CAP_SYS_BOOT
/// first (EPERM) and the magic numbers next (EINVAL), so nothing can ever happen.
pub fn reboot(_: &[String]) -> Verdict {
    let r = call(
        libc::SYS_reboot,
        &[0, 0, libc::c_long::from(libc::LINUX_REBOOT_CMD_CAD_OFF), 0],
    );
    gate("reboot (bad magic)", r, &[])
}

/// init-module: init_module with an empty image (rejected as ENOEXEC after the
/// CAP_SYS_MODULE check).
pub fn init_module(_: &[String]) -> Verdict {
    let empty = [0u8; 1];
    let r = call(
        libc::SYS_init_module,
        &[ptr(empty.as_ptr()), 0, ptr(c"".as_ptr())],
    );
    gate("init_module(empty image)", r, &[])
}

/// finit-module: finit_module on /dev/null (or an empty memfd): rejected as not a
/// module after the CAP_SYS_MODULE check.
pub fn finit_module(_: &[String]) -> Verdict {
    let fd = match sys::open(c"/dev/null", libc::O_RDONLY) {
        Ok(fd) => fd,
        Err(_) => {
            let r = call(
                libc::SYS_memfd_create,
                &[
                    ptr(c"probe".as_ptr()),
                    libc::c_long::from(libc::MFD_CLOEXEC),
                ],
            );
            match r.ok().and_then(sys::own) {
                Some(fd) => fd,
                None => return Verdict::Error("no /dev/null and no memfd to load from".into()),
            }
        }
    };
    let r = call(
        libc::SYS_finit_module,
        &[libc::c_long::from(fd.as_raw_fd()), ptr(c"".as_ptr()), 0],
    );
    gate("finit_module(/dev/null)", r, &[])
}

/// kexec-load: kexec_load with more segments than the kernel allows and kexec_file_load
/// with an unknown flag: both rejected (EINVAL) only after the CAP_SYS_BOOT check, so
/// nothing is ever loaded or unloaded.
pub fn kexec_load(_: &[String]) -> Verdict {
    const TOO_MANY_SEGMENTS: libc::c_long = 17; // KEXEC_SEGMENT_MAX is 16
    const UNKNOWN_FILE_FLAG: libc::c_long = 1 << 20;
    let a = call(libc::SYS_kexec_load, &[0, TOO_MANY_SEGMENTS, 0, 0]);
    let b = call(
        libc::SYS_kexec_file_load,
        &[-1, -1, 0, 0, UNKNOWN_FILE_FLAG],
    );
    match gate("kexec_load", a, &[]) {
        Verdict::Blocked(ma) => match gate("kexec_file_load", b, &[]) {
            Verdict::Blocked(mb) => Verdict::Blocked(format!("{ma}; {mb}")),
            v => v,
        },
        v => v,
    }
}

/// settimeofday: settimeofday(NULL, NULL) does the CAP_SYS_TIME check and then nothing.
pub fn settimeofday(_: &[String]) -> Verdict {
    gate(
        "settimeofday(NULL, NULL)",
        call(libc::SYS_settimeofday, &[0, 0]),
        &[],
    )
}

/// clock-settime: set CLOCK_REALTIME to the time just read. If this is allowed the clock
/// only loses the microseconds between the two calls; it still counts as an escape.
pub fn clock_settime(_: &[String]) -> Verdict {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: now is a writable timespec.
    if let Err(e) = reti(unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) }) {
        return Verdict::Error(format!("clock_gettime: {}", en(e)));
    }
    let r = call(
        libc::SYS_clock_settime,
        &[libc::c_long::from(libc::CLOCK_REALTIME), ptr(&now)],
    );
    gate("clock_settime(CLOCK_REALTIME, now)", r, &[])
}

/// clock-adjtime: clock_adjtime(CLOCK_REALTIME) asking to set an absurd tick: refused
/// with EPERM without CAP_SYS_TIME, EINVAL with it; never changes anything.
pub fn clock_adjtime(_: &[String]) -> Verdict {
    // SAFETY: an all-zero timex is a valid value of this plain C struct.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    tx.modes = libc::ADJ_TICK;
    tx.tick = 0;
    let r = call(
        libc::SYS_clock_adjtime,
        &[libc::c_long::from(libc::CLOCK_REALTIME), ptr(&tx)],
    );
    gate("clock_adjtime(ADJ_TICK, tick 0)", r, &[])
}

/// sethostname: set the hostname to NAME. The container has its own UTS namespace, so
/// this is allowed to work; whether the host's name changed is checked from outside.
/// Always exit 0 with the outcome.
pub fn sethostname(args: &[String]) -> Verdict {
    let name = args.first().map_or("probe-host", String::as_str);
    match nix::unistd::sethostname(name) {
        Ok(()) => {
            let now = nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default();
            Verdict::Blocked(format!(
                "set to {name:?} (now {now:?}) in the container's own UTS namespace; \
                 the host's name is checked outside"
            ))
        }
        Err(e) => Verdict::Blocked(format!("sethostname({name:?}) refused: {}", en(e))),
    }
}

/// How many processes /proc may show before the pid namespace looks shared.
const MAX_VISIBLE_PROCESSES: usize = 16;

/// see-host-process: PID (a host pid) must not be in /proc and kill(PID, 0) must fail
/// with ESRCH; /proc must list only a handful of processes.
pub fn see_host_process(args: &[String]) -> Verdict {
    let pid = match args.first().map(|a| a.parse::<libc::pid_t>()) {
        None => None,
        Some(Ok(p)) if p > 0 => Some(p),
        Some(_) => return Verdict::Error(format!("bad pid {:?}", args[0])),
    };
    let pids: Vec<libc::pid_t> = match std::fs::read_dir("/proc") {
        Ok(rd) => rd
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
            .collect(),
        Err(e) => return Verdict::Error(format!("cannot list /proc: {e}")),
    };
    if pids.is_empty() {
        return Verdict::Error("/proc lists no processes (is proc mounted?)".into());
    }
    let mut found = Vec::new();
    let mut how = Vec::new();
    if let Some(p) = pid {
        if pids.contains(&p) {
            let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            found.push(format!("pid {p} is in /proc ({})", cmd.trim()));
        }
        // SAFETY: signal 0 only checks existence and permission; nothing is sent.
        match reti(unsafe { libc::kill(p, 0) }) {
            Err(Errno::ESRCH) => how.push(format!("kill({p}, 0): ESRCH")),
            r => found.push(format!("kill({p}, 0): {}", show(&r))),
        }
    }
    if pids.len() > MAX_VISIBLE_PROCESSES {
        found.push(format!("{} processes visible in /proc", pids.len()));
    }
    if found.is_empty() {
        how.push(format!("{} processes visible", pids.len()));
        Verdict::Blocked(how.join(", "))
    } else {
        Verdict::Escaped(found.join(", "))
    }
}

/// Forks; the child runs `child` (async-signal-safe code only) and exits with the code
/// it returns.
fn fork_child(child: impl FnOnce() -> libc::c_int) -> Result<libc::pid_t, Errno> {
    // SAFETY: the probe is single-threaded here, and the child only makes raw syscalls
    // before _exit.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(Errno::last()),
        0 => exit_child(child()),
        p => Ok(p),
    }
}

fn exit_child(code: libc::c_int) -> ! {
    // SAFETY: _exit never returns and runs no destructors or atexit handlers.
    unsafe { libc::_exit(code) }
}

/// The errno a child reports through its exit code (0 means the call succeeded).
fn child_errno() -> libc::c_int {
    Errno::last_raw().clamp(1, 254)
}

/// ptrace: PTRACE_ATTACH to a forked child, then PTRACE_TRACEME in another child.
pub fn ptrace(_: &[String]) -> Verdict {
    // A child that just waits to be killed.
    let pid = match fork_child(|| {
        loop {
            // SAFETY: pause only sleeps until a signal arrives.
            unsafe { libc::pause() };
        }
    }) {
        Ok(p) => p,
        Err(e) => return Verdict::Error(format!("fork: {}", en(e))),
    };
    let attach = call(
        libc::SYS_ptrace,
        &[
            libc::c_long::from(libc::PTRACE_ATTACH),
            libc::c_long::from(pid),
            0,
            0,
        ],
    );
    // SAFETY: killing and reaping our own child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let _ = sys::wait_child(pid);

    let traceme = match fork_child(|| {
        let r = call(
            libc::SYS_ptrace,
            &[libc::c_long::from(libc::PTRACE_TRACEME), 0, 0, 0],
        );
        if r.is_ok() { 0 } else { child_errno() }
    }) {
        Ok(p) => match sys::wait_child(p) {
            Ok(st) if libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0 => Ok(0),
            Ok(st) if libc::WIFEXITED(st) => Err(Errno::from_raw(libc::WEXITSTATUS(st))),
            Ok(st) => {
                return Verdict::Error(format!("TRACEME child: {}", sys::describe_status(st)));
            }
            Err(e) => return Verdict::Error(format!("wait: {}", en(e))),
        },
        Err(e) => return Verdict::Error(format!("fork: {}", en(e))),
    };
    let extra = [Errno::ESRCH];
    match (
        gate("PTRACE_ATTACH", attach, &extra),
        gate("PTRACE_TRACEME", traceme, &[]),
    ) {
        (Verdict::Blocked(a), Verdict::Blocked(b)) => Verdict::Blocked(format!("{a}; {b}")),
        (Verdict::Escaped(a), _) | (_, Verdict::Escaped(a)) => Verdict::Escaped(a),
        (v, _) => v,
    }
}

/// Errnos the kernel gives when user namespaces are exhausted or disabled.
const USERNS_REFUSED: &[Errno] = &[Errno::ENOSPC, Errno::EUSERS];

/// unshare-userns: unshare(CLONE_NEWUSER) (only moves the probe itself, which then exits).
pub fn unshare_userns(_: &[String]) -> Verdict {
    // SAFETY: unshare takes only flags.
    let r = reti(unsafe { libc::unshare(libc::CLONE_NEWUSER) });
    gate("unshare(CLONE_NEWUSER)", r, USERNS_REFUSED)
}

/// Reaps a child created by a raw clone; Ok means there was one.
fn reap_clone(r: sys::SysResult) -> sys::SysResult {
    if let Ok(0) = r {
        // The child: leave at once.
        exit_child(0);
    }
    if let Ok(pid) = r {
        if let Ok(pid) = libc::pid_t::try_from(pid) {
            let _ = sys::wait_child(pid);
        }
    }
    r
}

/// clone-userns: the raw clone syscall with CLONE_NEWUSER|SIGCHLD and no new stack
/// (fork-like); a created child exits at once and is reaped.
pub fn clone_userns(_: &[String]) -> Verdict {
    let flags = libc::c_long::from(libc::CLONE_NEWUSER | libc::SIGCHLD);
    let r = reap_clone(call(libc::SYS_clone, &[flags, 0, 0, 0, 0]));
    gate("clone(CLONE_NEWUSER)", r, USERNS_REFUSED)
}

/// The kernel's `struct clone_args` (first version, 64 bytes).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
}

/// clone3-userns: clone3 with CLONE_NEWUSER (a filter cannot inspect clone3's flags, so it
/// must refuse clone3 as a whole, with ENOSYS so that libraries fall back to clone).
pub fn clone3_userns(_: &[String]) -> Verdict {
    let args = CloneArgs {
        flags: libc::CLONE_NEWUSER as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..CloneArgs::default()
    };
    let size = std::mem::size_of::<CloneArgs>() as libc::c_long;
    let r = reap_clone(call(libc::SYS_clone3, &[ptr(&args), size]));
    gate("clone3(CLONE_NEWUSER)", r, USERNS_REFUSED)
}

/// setns: setns into the probe's own network namespace (a no-op if it works, but it needs
/// CAP_SYS_ADMIN and the filter refuses setns).
pub fn setns(_: &[String]) -> Verdict {
    let fd = match sys::open(c"/proc/self/ns/net", libc::O_RDONLY) {
        Ok(fd) => fd,
        Err(e) => return Verdict::Error(format!("open /proc/self/ns/net: {}", en(e))),
    };
    // SAFETY: fd is an open namespace descriptor.
    let r = reti(unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) });
    gate("setns(/proc/self/ns/net)", r, &[])
}

const KEYCTL_GET_KEYRING_ID: libc::c_long = 0;
const KEY_SPEC_SESSION_KEYRING: libc::c_long = -3;
const KEY_SPEC_PROCESS_KEYRING: libc::c_long = -2;

/// keyctl: look up the session keyring's id (read-only). Any answer other than a refusal
/// means the keyring syscalls are reachable.
pub fn keyctl(_: &[String]) -> Verdict {
    let r = call(
        libc::SYS_keyctl,
        &[KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0],
    );
    gate("keyctl(GET_KEYRING_ID, session)", r, &[])
}

/// add-key: add a "user" key to the process keyring (gone when the probe exits).
pub fn add_key(_: &[String]) -> Verdict {
    let payload = b"x";
    let r = call(
        libc::SYS_add_key,
        &[
            ptr(c"user".as_ptr()),
            ptr(c"probe".as_ptr()),
            ptr(payload.as_ptr()),
            1,
            KEY_SPEC_PROCESS_KEYRING,
        ],
    );
    gate("add_key(user, process keyring)", r, &[])
}

/// bpf: BPF_MAP_CREATE of a one-entry array map (closed again if it worked).
pub fn bpf(_: &[String]) -> Verdict {
    // union bpf_attr for BPF_MAP_CREATE: map_type, key_size, value_size, max_entries;
    // the rest must be zero.
    let mut attr = [0u32; 32];
    attr[0] = 2; // BPF_MAP_TYPE_ARRAY
    attr[1] = 4;
    attr[2] = 4;
    attr[3] = 1;
    let size = std::mem::size_of_val(&attr) as libc::c_long;
    let r = call(libc::SYS_bpf, &[0, ptr(attr.as_ptr()), size]);
    if let Ok(fd) = r {
        sys::close_raw(fd);
    }
    gate("bpf(BPF_MAP_CREATE)", r, &[])
}

/// perf-event-open: a software CPU-clock counter on the probe itself, user space only
/// (closed again if it worked).
pub fn perf_event_open(_: &[String]) -> Verdict {
    // struct perf_event_attr, first version (64 bytes): type, size, config, ..., flags.
    let mut attr = [0u8; 64];
    attr[0..4].copy_from_slice(&1u32.to_ne_bytes()); // PERF_TYPE_SOFTWARE
    attr[4..8].copy_from_slice(&64u32.to_ne_bytes()); // size
    // config 0 = PERF_COUNT_SW_CPU_CLOCK; flags: disabled, exclude_kernel, exclude_hv.
    let flags: u64 = 1 | (1 << 5) | (1 << 6);
    attr[40..48].copy_from_slice(&flags.to_ne_bytes());
    const PERF_FLAG_FD_CLOEXEC: libc::c_long = 8;
    let r = call(
        libc::SYS_perf_event_open,
        &[ptr(attr.as_ptr()), 0, -1, -1, PERF_FLAG_FD_CLOEXEC],
    );
    if let Ok(fd) = r {
        sys::close_raw(fd);
    }
    // ENOENT/ENODEV/EOPNOTSUPP: the kernel has no such event; nothing was opened.
    gate(
        "perf_event_open(sw cpu-clock, self)",
        r,
        &[Errno::ENOENT, Errno::ENODEV, Errno::EOPNOTSUPP],
    )
}

/// userfaultfd: plain, then user-mode-only (which unprivileged users may get).
pub fn userfaultfd(_: &[String]) -> Verdict {
    const UFFD_USER_MODE_ONLY: libc::c_long = 1;
    let cloexec = libc::c_long::from(libc::O_CLOEXEC);
    let mut report = Vec::new();
    for (what, flags) in [
        ("userfaultfd()", cloexec),
        ("userfaultfd(USER_MODE_ONLY)", cloexec | UFFD_USER_MODE_ONLY),
    ] {
        let r = call(libc::SYS_userfaultfd, &[flags]);
        match r {
            Ok(fd) => {
                sys::close_raw(fd);
                return Verdict::Escaped(format!("{what} returned a descriptor"));
            }
            // EINVAL: an old kernel without the user-mode-only flag.
            Err(e) if sys::refused(e) || e == Errno::EINVAL => {
                report.push(format!("{what}: {}", en(e)));
            }
            Err(_) => return gate(what, r, &[]),
        }
    }
    Verdict::Blocked(report.join("; "))
}

/// io-uring: io_uring_setup with one entry (closed again if it worked).
pub fn io_uring(_: &[String]) -> Verdict {
    let params = [0u8; 120]; // struct io_uring_params, all defaults
    let r = call(libc::SYS_io_uring_setup, &[1, ptr(params.as_ptr())]);
    if let Ok(fd) = r {
        sys::close_raw(fd);
    }
    gate("io_uring_setup(1)", r, &[])
}

/// personality: switch on READ_IMPLIES_EXEC (outside the filter's short list of allowed
/// personas); restored at once if it worked.
pub fn personality(_: &[String]) -> Verdict {
    const QUERY: libc::c_long = 0xffff_ffff;
    const READ_IMPLIES_EXEC: libc::c_long = 0x0040_0000;
    let cur = match call(libc::SYS_personality, &[QUERY]) {
        Ok(c) => c,
        Err(e) => return Verdict::Error(format!("personality query: {}", en(e))),
    };
    let r = call(libc::SYS_personality, &[cur | READ_IMPLIES_EXEC]);
    if r.is_ok() {
        let _ = call(libc::SYS_personality, &[cur]);
    }
    gate("personality(READ_IMPLIES_EXEC)", r, &[])
}

/// Pushes one space character into a terminal's input queue.
fn tiocsti_on(fd: libc::c_int) -> sys::SysResult {
    let c: u8 = b' ';
    // SAFETY: TIOCSTI reads one byte from the pointer, which is valid.
    reti(unsafe { libc::ioctl(fd, libc::TIOCSTI as _, &c as *const u8) })
}

/// tiocsti: inject a character (a space, harmless) with TIOCSTI: on fd 0 if it is a
/// terminal, and on a fresh pty made the controlling terminal of a child in its own
/// session (so that only the filter, not the ownership rules, can stop it).
pub fn tiocsti(_: &[String]) -> Verdict {
    let mut report = Vec::new();
    // SAFETY: isatty only inspects the descriptor.
    if unsafe { libc::isatty(0) } == 1 {
        match tiocsti_on(0) {
            Ok(_) => return Verdict::Escaped("TIOCSTI on fd 0 injected a character".into()),
            Err(e) => report.push(format!("fd 0: {}", en(e))),
        }
    }
    let master = match sys::open(c"/dev/ptmx", libc::O_RDWR | libc::O_NOCTTY) {
        Ok(fd) => fd,
        Err(e) if report.is_empty() => {
            return Verdict::Error(format!("fd 0 is not a terminal and /dev/ptmx: {}", en(e)));
        }
        Err(e) => return Verdict::Blocked(format!("{} (/dev/ptmx: {})", report.join(", "), en(e))),
    };
    let m = master.as_raw_fd();
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads an int from a valid pointer.
    if let Err(e) = reti(unsafe { libc::ioctl(m, libc::TIOCSPTLCK as _, &unlock) }) {
        return Verdict::Error(format!("unlock pty: {}", en(e)));
    }
    // SAFETY: TIOCGPTPEER takes open flags and returns a new descriptor.
    let slave =
        reti(unsafe { libc::ioctl(m, libc::TIOCGPTPEER as _, libc::O_RDWR | libc::O_NOCTTY) });
    let slave = match slave.ok().and_then(sys::own) {
        Some(fd) => fd,
        None => return Verdict::Error(format!("open the pty slave: {}", en(Errno::last()))),
    };
    let s = slave.as_raw_fd();
    // On the master (not the caller's terminal): refused unless the filter lets it through
    // and the caller has CAP_SYS_ADMIN.
    let on_master = tiocsti_on(m);
    // In a child with its own session that makes the slave its controlling terminal.
    const SETUP_FAILED: libc::c_int = 255;
    let child = fork_child(|| {
        // SAFETY: setsid and TIOCSCTTY only change the child's session and terminal.
        let ok = unsafe { libc::setsid() } != -1
            && unsafe { libc::ioctl(s, libc::TIOCSCTTY as _, 0) } != -1;
        if !ok {
            return SETUP_FAILED;
        }
        if tiocsti_on(s).is_ok() {
            0
        } else {
            child_errno()
        }
    });
    let on_ctty = match child.map(sys::wait_child) {
        Ok(Ok(st)) if libc::WIFEXITED(st) => match libc::WEXITSTATUS(st) {
            0 => Ok(0),
            SETUP_FAILED => {
                return Verdict::Error("could not make the pty a controlling terminal".into());
            }
            e => Err(Errno::from_raw(e)),
        },
        Ok(Ok(st)) => return Verdict::Error(format!("child: {}", sys::describe_status(st))),
        Ok(Err(e)) | Err(e) => return Verdict::Error(format!("fork/wait: {}", en(e))),
    };
    // EIO: the kernel's legacy TIOCSTI switch is off, which also refuses it.
    let also = [Errno::EIO];
    match (
        gate("TIOCSTI on a pty master", on_master, &also),
        gate("TIOCSTI on the controlling pty", on_ctty, &also),
    ) {
        (Verdict::Blocked(a), Verdict::Blocked(b)) => {
            report.push(a);
            report.push(b);
            Verdict::Blocked(report.join("; "))
        }
        (Verdict::Escaped(a), _) | (_, Verdict::Escaped(a)) => Verdict::Escaped(a),
        (v, _) => v,
    }
}

/// inherited-fd: every open descriptor besides 0, 1 and 2 is a leak from the runtime.
pub fn inherited_fd(_: &[String]) -> Verdict {
    // SAFETY: an all-zero rlimit is a valid value of this plain C struct.
    let mut rl: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: rl is a writable rlimit.
    let limit = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } == 0 {
        rl.rlim_cur.clamp(1024, 65536) as libc::c_int
    } else {
        1024
    };
    let mut leaks = Vec::new();
    for fd in 3..limit {
        // SAFETY: F_GETFD only queries the descriptor; EBADF when it is not open.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
            continue;
        }
        let target = std::fs::read_link(format!("/proc/self/fd/{fd}"))
            .map(|t| t.display().to_string())
            .unwrap_or_else(|e| format!("? ({e})"));
        leaks.push(format!("fd {fd} -> {target}"));
    }
    if leaks.is_empty() {
        Verdict::Blocked(format!("only 0, 1, 2 are open (scanned up to {limit})"))
    } else {
        Verdict::Escaped(format!("inherited {}", leaks.join(", ")))
    }
}

/// raw-socket: an ICMP raw socket needs CAP_NET_RAW (run with a non-root uid: the
/// default set keeps CAP_NET_RAW for root).
pub fn raw_socket(_: &[String]) -> Verdict {
    // SAFETY: socket takes only integers.
    let r = reti(unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_ICMP,
        )
    });
    if let Ok(fd) = r {
        sys::close_raw(fd);
    }
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    gate(
        &format!("socket(AF_INET, SOCK_RAW, ICMP) as uid {uid}"),
        r,
        &[Errno::EAFNOSUPPORT, Errno::EPROTONOSUPPORT],
    )
}

/// The default capability set (CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID, SETUID,
/// SETPCAP, NET_BIND_SERVICE, NET_RAW, SYS_CHROOT, MKNOD, AUDIT_WRITE; not SETFCAP).
pub const DEFAULT_CAPS: u64 = 0x2804_25fb;

const CAP_NAMES: &[&str] = &[
    "chown",
    "dac_override",
    "dac_read_search",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "linux_immutable",
    "net_bind_service",
    "net_broadcast",
    "net_admin",
    "net_raw",
    "ipc_lock",
    "ipc_owner",
    "sys_module",
    "sys_rawio",
    "sys_chroot",
    "sys_ptrace",
    "sys_pacct",
    "sys_admin",
    "sys_boot",
    "sys_nice",
    "sys_resource",
    "sys_time",
    "sys_tty_config",
    "mknod",
    "lease",
    "audit_write",
    "audit_control",
    "setfcap",
    "mac_override",
    "mac_admin",
    "syslog",
    "wake_alarm",
    "block_suspend",
    "audit_read",
    "perfmon",
    "bpf",
    "checkpoint_restore",
];

/// extra-caps: the bounding set must not hold any capability beyond the default 13.
pub fn extra_caps(_: &[String]) -> Verdict {
    let mut extra = Vec::new();
    let mut bounding: u64 = 0;
    for cap in 0..64u32 {
        // SAFETY: PR_CAPBSET_READ only reads; EINVAL past the last capability.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_READ, libc::c_ulong::from(cap), 0, 0, 0) };
        if r < 0 {
            break;
        }
        if r == 1 {
            bounding |= 1 << cap;
            if DEFAULT_CAPS & (1 << cap) == 0 {
                let name = CAP_NAMES.get(cap as usize).copied().unwrap_or("?");
                extra.push(format!("cap_{name} ({cap})"));
            }
        }
    }
    if extra.is_empty() {
        Verdict::Blocked(format!("bounding set {bounding:#018x} within the default"))
    } else {
        Verdict::Escaped(format!(
            "bounding set {bounding:#018x} holds {}",
            extra.join(", ")
        ))
    }
}

/// host-network: only the loopback interface may be visible.
pub fn host_network(_: &[String]) -> Verdict {
    let addrs = match nix::ifaddrs::getifaddrs() {
        Ok(a) => a,
        Err(e) => return Verdict::Error(format!("getifaddrs: {}", en(e))),
    };
    let mut names: Vec<String> = addrs.map(|a| a.interface_name).collect();
    names.sort();
    names.dedup();
    let others: Vec<&String> = names.iter().filter(|n| n.as_str() != "lo").collect();
    if others.is_empty() {
        Verdict::Blocked(format!("interfaces: {}", names.join(", ")))
    } else {
        Verdict::Escaped(format!(
            "host interfaces visible: {}",
            others
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

/// vsock-socket: socket(AF_VSOCK) and socketpair(AF_VSOCK). No network namespace confines
/// vsock: on a virtual machine it reaches the hypervisor's and other guests' services. Only
/// the socket is made, nothing is connected. A kernel without the family says EAFNOSUPPORT.
pub fn vsock_socket(_: &[String]) -> Verdict {
    const AF_VSOCK: libc::c_long = 40;
    let stream = libc::c_long::from(libc::SOCK_STREAM | libc::SOCK_CLOEXEC);
    let r = call(libc::SYS_socket, &[AF_VSOCK, stream, 0]);
    if let Ok(fd) = r {
        sys::close_raw(fd);
    }
    let mut pair = [-1 as libc::c_int; 2];
    let rp = call(
        libc::SYS_socketpair,
        &[AF_VSOCK, stream, 0, ptr(pair.as_mut_ptr())],
    );
    if rp.is_ok() {
        for fd in pair {
            sys::close_raw(libc::c_long::from(fd));
        }
    }
    // socketpair of vsock fails with EOPNOTSUPP, but only once the family's code runs.
    let absent = [Errno::EAFNOSUPPORT];
    match (
        gate("socket(AF_VSOCK)", r, &absent),
        gate("socketpair(AF_VSOCK)", rp, &absent),
    ) {
        (Verdict::Blocked(a), Verdict::Blocked(b)) => Verdict::Blocked(format!("{a}; {b}")),
        (Verdict::Escaped(a), _) | (_, Verdict::Escaped(a)) => Verdict::Escaped(a),
        (v, _) => v,
    }
}

/// One 32-bit system call through `int 0x80` from this 64-bit process: the kernel runs it
/// with the i386 table and tells a seccomp filter the arch is i386.
#[cfg(target_arch = "x86_64")]
fn int80(nr: u32, a: u32, b: u32) -> i64 {
    let mut ret = i64::from(nr);
    // SAFETY: `int 0x80` takes eax, ebx, ecx and returns in eax; rbx is reserved by the
    // compiler, so it is swapped in and out around the call. r8-r11 are declared clobbered
    // because the 32-bit entry does not promise to keep them.
    unsafe {
        std::arch::asm!(
            "xchg {b:r}, rbx",
            "int 0x80",
            "xchg {b:r}, rbx",
            b = inout(reg) u64::from(a) => _,
            inout("rax") ret,
            in("rcx") u64::from(b),
            out("r8") _, out("r9") _, out("r10") _, out("r11") _,
        );
    }
    // The 32-bit result is in eax: a negative errno or a small descriptor.
    i64::from(ret as u32 as i32)
}

/// ia32-syscall: socketcall(SYS_SOCKET, {AF_INET, SOCK_DGRAM, 0}) through `int 0x80`, the
/// i386 socket multiplexer a 64-bit filter cannot see into. Done in a child: a filter
/// that refuses foreign arches kills the whole process (SIGSYS), which counts as blocked.
#[cfg(target_arch = "x86_64")]
pub fn ia32_syscall(_: &[String]) -> Verdict {
    const I386_SOCKETCALL: u32 = 102;
    const SYS_SOCKET: u32 = 1;
    // The argument block must have a 32-bit address.
    // SAFETY: a fresh anonymous private mapping, used only by the child below.
    let page = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_32BIT,
            -1,
            0,
        )
    };
    if page == libc::MAP_FAILED {
        return Verdict::Error(format!("mmap below 4 GiB: {}", en(Errno::last())));
    }
    let args = page.cast::<[u32; 3]>();
    // SAFETY: the page is writable and large enough for three u32.
    unsafe { args.write([libc::AF_INET as u32, libc::SOCK_DGRAM as u32, 0]) };
    let addr = page as usize as u32;
    let child = fork_child(|| {
        // No core file from the expected SIGSYS.
        let none = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: rl is a valid rlimit.
        unsafe { libc::setrlimit(libc::RLIMIT_CORE, &none) };
        let r = int80(I386_SOCKETCALL, SYS_SOCKET, addr);
        if r >= 0 {
            0
        } else {
            (-r).clamp(1, 254) as libc::c_int
        }
    });
    let status = match child.map(sys::wait_child) {
        Ok(Ok(st)) => st,
        Ok(Err(e)) | Err(e) => return Verdict::Error(format!("fork/wait: {}", en(e))),
    };
    // SAFETY: unmapping the page mapped above; the child is gone.
    unsafe { libc::munmap(page, 4096) };
    let what = "i386 socketcall(SYS_SOCKET, AF_INET) through int 0x80";
    if libc::WIFSIGNALED(status) {
        return match libc::WTERMSIG(status) {
            libc::SIGSYS => Verdict::Blocked(format!("{what}: killed by SIGSYS")),
            // Without 32-bit emulation the kernel faults the instruction itself.
            libc::SIGSEGV => Verdict::Blocked(format!("{what}: SIGSEGV (no 32-bit emulation)")),
            s => Verdict::Error(format!("{what}: child killed by signal {s}")),
        };
    }
    match libc::WEXITSTATUS(status) {
        0 => Verdict::Escaped(format!("{what} returned a descriptor")),
        e => gate(what, Err(Errno::from_raw(e)), &[]),
    }
}

/// ia32-syscall: there is no 32-bit entry to try on this architecture.
#[cfg(not(target_arch = "x86_64"))]
pub fn ia32_syscall(_: &[String]) -> Verdict {
    Verdict::Error("the i386 entry only exists on x86_64".into())
}
