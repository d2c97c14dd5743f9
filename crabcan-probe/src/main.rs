//! crabcan-probe: run inside a container, make one escape attempt (or one positive
//! check of normal operation) and report the outcome on one line.
//!
//! Exit codes: 0 `blocked: <attempt>: <how>` (or `ok: ...` for checks),
//! 1 `ESCAPED: <attempt>: <what>` (or `FAILED: ...` for checks), 2 `error: ...` when the
//! probe could not even try.
//!
//! Every attempt is written so that it is harmless even when it succeeds: privileged calls
//! are made with arguments the kernel rejects right after its permission check (so the
//! errno tells whether the permission check passed), anything created is removed, and the
//! clock is only ever set to the time just read.

mod attempts;
mod checks;
mod kernel;
mod runtime;
mod setid;
mod sys;

use std::process::ExitCode;

/// What one attempt or check found.
pub enum Verdict {
    /// The attempt failed as it must.
    Blocked(String),
    /// The attempt succeeded (or got past the kernel's permission check).
    Escaped(String),
    /// A positive check worked.
    Ok(String),
    /// A positive check did not work.
    Failed(String),
    /// The probe could not even try.
    Error(String),
}

/// An attempt or check: name, optional argument description, what it does, the code.
struct Entry {
    name: &'static str,
    args: &'static str,
    about: &'static str,
    run: fn(&[String]) -> Verdict,
}

const fn e(
    name: &'static str,
    args: &'static str,
    about: &'static str,
    run: fn(&[String]) -> Verdict,
) -> Entry {
    Entry {
        name,
        args,
        about,
        run,
    }
}

/// Every escape attempt, in the order `list` prints them.
const ATTEMPTS: &[Entry] = &[
    e(
        "mount",
        "[DIR]",
        "mount a tmpfs (on DIR or a scratch dir)",
        attempts::mount,
    ),
    e(
        "umount",
        "[PATH...]",
        "umount2(MNT_DETACH) /proc, then /",
        attempts::umount,
    ),
    e(
        "pivot-root",
        "",
        "pivot_root(\".\", \".\") at /",
        attempts::pivot_root,
    ),
    e(
        "chroot-breakout",
        "[HOST-MARKER]",
        "chroot + fchdir + chdir(\"..\") walk",
        attempts::chroot_breakout,
    ),
    e(
        "open-by-handle-at",
        "",
        "open / by file handle",
        attempts::open_by_handle,
    ),
    e(
        "mknod-block",
        "",
        "mknod a block device 8:0",
        attempts::mknod_block,
    ),
    e(
        "dev-nodes",
        "",
        "device nodes in /dev beyond the harmless set",
        attempts::dev_nodes,
    ),
    e(
        "chmod-suid",
        "[DIR]",
        "set the setuid/setgid bits with chmod, fchmod, fchmodat, fchmodat2",
        setid::chmod_suid,
    ),
    e(
        "create-suid",
        "[DIR]",
        "create setuid files: open, openat, creat, mknod, mknodat, openat2",
        setid::create_suid,
    ),
    e(
        "set-fcap",
        "[DIR]",
        "give a file a capability: setxattr security.capability",
        setid::set_fcap,
    ),
    e(
        "sysrq-trigger",
        "",
        "write 'h' (help) to /proc/sysrq-trigger",
        attempts::sysrq_trigger,
    ),
    e(
        "read-kcore",
        "",
        "read bytes of /proc/kcore",
        attempts::read_kcore,
    ),
    e(
        "proc-masked",
        "",
        "read the masked /proc and /sys paths",
        attempts::proc_masked,
    ),
    e(
        "proc-readonly",
        "",
        "/proc/sys, /proc/bus, /proc/fs, /proc/irq must be read-only",
        attempts::proc_readonly,
    ),
    e(
        "write-proc-sys",
        "",
        "write the current domainname back to /proc/sys",
        attempts::write_proc_sys,
    ),
    e(
        "write-sys",
        "[PATH]",
        "write a sysfs file's current value back",
        attempts::write_sys,
    ),
    e(
        "reboot",
        "",
        "reboot() with a wrong magic number (never acts)",
        kernel::reboot,
    ),
    e(
        "init-module",
        "",
        "init_module with an empty image",
        kernel::init_module,
    ),
    e(
        "finit-module",
        "",
        "finit_module on /dev/null",
        kernel::finit_module,
    ),
    e(
        "kexec-load",
        "",
        "kexec_load/kexec_file_load with invalid arguments",
        kernel::kexec_load,
    ),
    e(
        "settimeofday",
        "",
        "settimeofday(NULL, NULL) (permission check only)",
        kernel::settimeofday,
    ),
    e(
        "clock-settime",
        "",
        "clock_settime(CLOCK_REALTIME, <time just read>)",
        kernel::clock_settime,
    ),
    e(
        "clock-adjtime",
        "",
        "clock_adjtime with an invalid tick (permission check only)",
        kernel::clock_adjtime,
    ),
    e(
        "sethostname",
        "[NAME]",
        "set the hostname (allowed in the own UTS namespace; always exit 0)",
        kernel::sethostname,
    ),
    e(
        "see-host-process",
        "[PID]",
        "PID must be invisible and unsignalable; few processes visible",
        kernel::see_host_process,
    ),
    e(
        "ptrace",
        "",
        "PTRACE_ATTACH to a child, PTRACE_TRACEME in a child",
        kernel::ptrace,
    ),
    e(
        "unshare-userns",
        "",
        "unshare(CLONE_NEWUSER)",
        kernel::unshare_userns,
    ),
    e(
        "clone-userns",
        "",
        "clone(CLONE_NEWUSER)",
        kernel::clone_userns,
    ),
    e(
        "clone3-userns",
        "",
        "clone3(CLONE_NEWUSER)",
        kernel::clone3_userns,
    ),
    e("setns", "", "setns into /proc/self/ns/net", kernel::setns),
    e(
        "keyctl",
        "",
        "keyctl(KEYCTL_GET_KEYRING_ID, session)",
        kernel::keyctl,
    ),
    e(
        "add-key",
        "",
        "add_key to the process keyring",
        kernel::add_key,
    ),
    e(
        "bpf",
        "",
        "bpf(BPF_MAP_CREATE) of a one-entry array",
        kernel::bpf,
    ),
    e(
        "perf-event-open",
        "",
        "perf_event_open of a software clock on self",
        kernel::perf_event_open,
    ),
    e(
        "userfaultfd",
        "",
        "userfaultfd (also user-mode only)",
        kernel::userfaultfd,
    ),
    e(
        "io-uring",
        "",
        "io_uring_setup with one entry",
        kernel::io_uring,
    ),
    e(
        "personality",
        "",
        "personality(READ_IMPLIES_EXEC)",
        kernel::personality,
    ),
    e(
        "tiocsti",
        "",
        "TIOCSTI on fd 0 and on a pty made the controlling terminal",
        kernel::tiocsti,
    ),
    e(
        "inherited-fd",
        "",
        "any open fd besides 0, 1, 2",
        kernel::inherited_fd,
    ),
    e(
        "raw-socket",
        "",
        "socket(AF_INET, SOCK_RAW, IPPROTO_ICMP)",
        kernel::raw_socket,
    ),
    e(
        "extra-caps",
        "",
        "bounding set must stay within the default 13 capabilities",
        kernel::extra_caps,
    ),
    e(
        "vsock-socket",
        "",
        "socket(AF_VSOCK) and socketpair(AF_VSOCK)",
        kernel::vsock_socket,
    ),
    e(
        "ia32-syscall",
        "",
        "i386 socketcall(SYS_SOCKET) through int 0x80",
        kernel::ia32_syscall,
    ),
    e(
        "host-network",
        "",
        "network interfaces besides lo",
        kernel::host_network,
    ),
];

/// The positive checks: normal workloads that must keep working.
const CHECKS: &[Entry] = &[
    e("ok-threads", "", "spawn and join threads", checks::threads),
    e(
        "ok-fork-exec",
        "",
        "fork + exec /bin/true and wait",
        checks::fork_exec,
    ),
    e(
        "ok-loopback-tcp",
        "",
        "TCP over 127.0.0.1",
        checks::loopback_tcp,
    ),
    e(
        "ok-file-write",
        "",
        "create/write/read/remove under /tmp and /",
        checks::file_write,
    ),
    e(
        "ok-terminal",
        "",
        "open a pty from /dev/ptmx, unlock it, TCGETS on both ends",
        checks::terminal,
    ),
    e(
        "ok-rlimit",
        "",
        "getrlimit/setrlimit: lower RLIMIT_NOFILE",
        checks::rlimit,
    ),
];

fn usage() -> String {
    let mut s = String::from(
        "usage: crabcan-probe ATTEMPT [ARGS]   (one escape attempt)\n\
         \x20      crabcan-probe ok-CHECK           (one positive check)\n\
         \x20      crabcan-probe list | status | help\n\nattempts and checks:\n",
    );
    for en in ATTEMPTS.iter().chain(CHECKS) {
        s.push_str(&format!("  {:<18} {:<15} {}\n", en.name, en.args, en.about));
    }
    s
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let Some(cmd) = args.first() else {
        eprint!("{}", usage());
        println!("error: no attempt given (try `crabcan-probe list`)");
        return ExitCode::from(2);
    };
    match cmd.as_str() {
        "list" => {
            for en in ATTEMPTS.iter().chain(CHECKS) {
                println!("{}", en.name);
            }
            return ExitCode::SUCCESS;
        }
        "help" | "--help" | "-h" => {
            print!("{}", usage());
            return ExitCode::SUCCESS;
        }
        "status" => return checks::status(),
        // Not listed: it only means something when run as a runtime binary's loader.
        "overwrite-exe" => return runtime::overwrite_exe(false),
        "overwrite-exe-behind" => return runtime::overwrite_exe(true),
        "overwrite-fd" => return runtime::overwrite_fd(&args[1..]),
        "no-pdeathsig" => return runtime::no_pdeathsig(&args[1..]),
        "watch-execs" => return runtime::watch_execs(&args[1..]),
        _ => {}
    }
    let Some(entry) = ATTEMPTS.iter().chain(CHECKS).find(|en| en.name == cmd) else {
        println!("error: unknown attempt {cmd:?} (try `crabcan-probe list`)");
        return ExitCode::from(2);
    };
    let (tag, text, code) = match (entry.run)(&args[1..]) {
        Verdict::Blocked(m) => ("blocked", m, 0),
        Verdict::Ok(m) => ("ok", m, 0),
        Verdict::Escaped(m) => ("ESCAPED", m, 1),
        Verdict::Failed(m) => ("FAILED", m, 1),
        Verdict::Error(m) => ("error", m, 2),
    };
    println!("{tag}: {}: {text}", entry.name);
    ExitCode::from(code)
}

/// Judges a privileged call made with arguments the kernel rejects only after its
/// permission check: success, or any errno other than a refusal (or one of
/// `also_refused`), means the permission check passed, which counts as an escape.
pub fn gate(what: &str, r: sys::SysResult, also_refused: &[sys::Errno]) -> Verdict {
    match r {
        Ok(v) => Verdict::Escaped(format!("{what} succeeded (returned {v})")),
        Err(e) if sys::refused(e) || also_refused.contains(&e) => {
            Verdict::Blocked(format!("{what}: {}", sys::en(e)))
        }
        Err(e) => Verdict::Escaped(format!(
            "{what} passed the permission check (then failed with {})",
            sys::en(e)
        )),
    }
}
