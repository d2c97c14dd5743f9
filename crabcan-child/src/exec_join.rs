//! `exec`: a second process in a running (or created) container, joining its namespaces
//! and cgroups, then set up as the container's own process was, and exec'd.
//!
//! Three processes take part. The caller (crabcan, single-threaded, running from its
//! sealed copy) has opened every namespace descriptor and cgroup file of the container
//! before anything is joined, and forks a joiner, straight into the container's cgroup v2
//! directory where there is one. The joiner makes itself non-dumpable, closes every
//! descriptor it was not given, enters the container's v1 cgroups itself (as the container's
//! own process does: see [`crabcan_cgroups::Entry`]), joins the namespaces (those owned by an ancestor user namespace
//! first, then the user namespace, then the rest), and clones the final process with
//! `CLONE_PARENT` so that it is the caller's child, in the container's pid namespace; the
//! joiner then exits. The final process sets up (session, pty, rlimits, seccomp and
//! capabilities in the init's order, ids, working directory checked inside the root,
//! descriptors) and execs. No crabcan process is left in the container once it has.

use crate::detached::{
    Console, close_from, close_others, console, enter_cgroup, ns_name, set_ids_of,
};
use crate::fork::{Forked, fork_into_cgroup};
use crabcan_errors::{Errcode, Result, SysContext};
use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::socket::MsgFlags;
use nix::unistd::Pid;
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

/// Sent by the final process just before its last step and `execve`.
const READY: &[u8] = b"ready";
/// The joiner's report of the final process's pid.
const PID: &[u8] = b"pid:";

/// A namespace of the container to join.
#[derive(Debug)]
pub struct JoinNs {
    /// Its `CLONE_NEW*` flag.
    pub flag: CloneFlags,
    /// A descriptor opened on `/proc/PID/ns/...` before any join.
    pub fd: OwnedFd,
    /// Owned by a user namespace other than the container's own (one the caller is
    /// privileged in): joined before the user namespace.
    pub outside_userns: bool,
}

/// Everything the exec'd process needs, decided before the fork.
#[derive(Debug)]
pub struct ExecSpec {
    /// The container's namespaces that differ from the caller's.
    pub namespaces: Vec<JoinNs>,
    /// The container's cgroup, entered before any namespace.
    pub cgroup: Option<crabcan_cgroups::ContainerCgroup>,
    /// The setgroups file of the container's user namespace says deny.
    pub deny_setgroups: bool,
    /// rlimits: resource, soft, hard.
    pub rlimits: Vec<(u32, u64, u64)>,
    /// uid inside.
    pub uid: u32,
    /// gid inside.
    pub gid: u32,
    /// Supplementary groups.
    pub additional_gids: Vec<u32>,
    /// umask.
    pub umask: Option<u32>,
    /// Working directory inside; it must resolve inside the container's root.
    pub cwd: PathBuf,
    /// The command.
    pub argv: Vec<CString>,
    /// Its environment.
    pub env: Vec<CString>,
    /// The container's capabilities, no_new_privs and seccomp profile.
    pub security: crabcan_security::SecurityPlan,
    /// A pty for the process, its master sent over this socket.
    pub console: Option<Console>,
    /// Inherited descriptors 3..3+N passed to the process.
    pub preserve_fds: u32,
}

/// Starts the process described by `spec` in the container; returns its pid on the host
/// once it has exec'd (or an error, with nothing left running). Refuses a multi-threaded
/// caller; the process is the caller's child.
pub fn exec_in(spec: &ExecSpec) -> Result<Pid> {
    crate::ensure_single_threaded("start the process in the container")?;
    // Read once here: the process has it from this one's memory (see crate::spawn).
    let _ = crabcan_security::kernel_last_cap();
    let (parent_end, child_end) = crate::channel()?;
    let (parent_raw, child_raw) = (parent_end.as_raw_fd(), child_end.as_raw_fd());
    let entry = spec
        .cgroup
        .as_ref()
        .map(crabcan_cgroups::ContainerCgroup::entry)
        .transpose()
        .map_err(|e| e.context("join the container's cgroup"))?;
    let joiner_main = |in_v2: bool| -> ! {
        let code = match join(spec, entry.as_ref(), in_v2, parent_raw, child_raw) {
            Ok(()) => 0,
            Err(e) => {
                let _ = nix::sys::socket::send(child_raw, &e.encode(), MsgFlags::empty());
                e.exit_code()
            }
        };
        // SAFETY: _exit skips the parent's atexit handlers and buffers.
        unsafe { libc::_exit(code) }
    };
    let into_v2 = match entry.as_ref().and_then(crabcan_cgroups::Entry::v2_dir) {
        // SAFETY: the caller is single-threaded (documented); the child only runs
        // `joiner_main`, which ends in _exit.
        Some(dir) => match unsafe { fork_into_cgroup(CloneFlags::empty(), dir) } {
            Ok(Forked::Child) => joiner_main(true),
            Ok(Forked::Parent(pid)) => Some(pid),
            Err(e) if crate::fork::unsupported(e) => None,
            Err(e) => return Err(Errcode::sys("fork the exec joiner (clone3)", e)),
        },
        None => None,
    };
    let joiner = match into_v2 {
        Some(pid) => pid,
        // SAFETY: the caller is single-threaded (documented); the child only runs
        // `joiner_main`, which ends in _exit.
        None => match unsafe { nix::unistd::fork() }.sys_ctx(|| "fork the exec joiner")? {
            nix::unistd::ForkResult::Child => joiner_main(false),
            nix::unistd::ForkResult::Parent { child } => child,
        },
    };
    drop(entry);
    drop(child_end);
    let mut pid = None;
    let r = watch(&parent_end, &mut pid);
    // The joiner exits as soon as it has cloned (or failed).
    let _ = nix::sys::wait::waitpid(joiner, None);
    match (r, pid) {
        (Ok(()), Some(p)) => Ok(p),
        (Ok(()), None) => Err(Errcode::setup("the exec joiner died before it reported")),
        (Err(e), p) => {
            if let Some(p) = p {
                let _ = nix::sys::signal::kill(p, Signal::SIGKILL);
                let _ = nix::sys::wait::waitpid(p, None);
            }
            Err(e)
        }
    }
}

/// Reads the channel until every child end is closed: the pid, then READY, then either
/// nothing (exec'd) or an error. An error does not end the reading: the process can fail
/// and say so before the joiner has sent its pid, and a process whose pid the caller never
/// learns is never reaped (a zombie in the container's pid namespace keeps its init from
/// dying at `delete`).
fn watch(chan: &OwnedFd, pid: &mut Option<Pid>) -> Result<()> {
    let mut buf = vec![0u8; 8192];
    let mut ready = false;
    let mut failed = None;
    loop {
        let n = match nix::sys::socket::recv(chan.as_raw_fd(), &mut buf, MsgFlags::empty()) {
            Err(Errno::EINTR) => continue,
            r => r.sys_ctx(|| "read the exec'd process's setup result")?,
        };
        let m = &buf[..n];
        if m.is_empty() {
            if let Some(e) = failed {
                return Err(e);
            }
            return match (pid.is_some(), ready) {
                (true, true) => Ok(()),
                (true, false) => Err(Errcode::setup("the exec'd process died during its setup")),
                _ => Ok(()),
            };
        }
        if let Some(rest) = m.strip_prefix(PID) {
            let p = std::str::from_utf8(rest)
                .ok()
                .and_then(|s| s.parse::<i32>().ok())
                .ok_or_else(|| Errcode::setup("the exec joiner sent an unreadable pid"))?;
            *pid = Some(Pid::from_raw(p));
        } else if m == READY {
            ready = true;
        } else {
            failed.get_or_insert(Errcode::decode(m).unwrap_or_else(|| {
                Errcode::setup("the exec'd process reported an unreadable setup error")
            }));
        }
    }
}

/// The joiner: cgroups, namespaces, the clone of the final process.
fn join(
    spec: &ExecSpec,
    entry: Option<&crabcan_cgroups::Entry>,
    in_v2: bool,
    parent_end: RawFd,
    chan: RawFd,
) -> Result<()> {
    // SAFETY: the parent's end of the pair, not used in this process again.
    unsafe { libc::close(parent_end) };
    // Nothing of the container may inspect or ptrace a process that runs crabcan's code
    // and holds its descriptors (the CVE-2016-9962 class); the final process inherits it.
    nix::sys::prctl::set_dumpable(false).sys_ctx(|| "make the exec'd process non-dumpable")?;
    // Every descriptor the caller had, but stdio, the preserved ones and ours, goes now: a
    // leaked host directory must not become the process's way out (CVE-2024-21626).
    let mut keep = vec![chan];
    keep.extend(spec.namespaces.iter().map(|n| n.fd.as_raw_fd()));
    keep.extend(spec.console.as_ref().map(|c| c.socket.as_raw_fd()));
    if let Some(c) = entry {
        keep.extend(c.fds().iter().map(AsRawFd::as_raw_fd));
    }
    close_others(3 + spec.preserve_fds as RawFd, &keep)?;
    if let Some(c) = entry {
        enter_cgroup(c, in_v2).map_err(|e| e.context("join the container's cgroup"))?;
    }
    let is_user = |n: &&JoinNs| n.flag == CloneFlags::CLONE_NEWUSER;
    let order = spec
        .namespaces
        .iter()
        .filter(|n| n.outside_userns && !is_user(n))
        .chain(spec.namespaces.iter().filter(is_user))
        .chain(
            spec.namespaces
                .iter()
                .filter(|n| !n.outside_userns && !is_user(n)),
        );
    // The caller's supplementary groups would stay with the process where the container's
    // user namespace denies setgroups (they cannot be changed inside): drop them while this
    // process may. An ordinary caller's groups are its own, and it may not drop them.
    if spec.namespaces.iter().any(|n| is_user(&n))
        && let Err(e) = nix::unistd::setgroups(&[])
        && nix::unistd::geteuid().is_root()
    {
        return Err(Errcode::sys("drop the caller's supplementary groups", e));
    }
    for n in order {
        nix::sched::setns(&n.fd, n.flag)
            .sys_ctx(|| format!("join the container's {} namespace (setns)", ns_name(n.flag)))?;
    }
    let mut stack = crate::fork::Stack::new()?;
    let cb = Box::new(|| final_main(spec, chan));
    // SAFETY: single-threaded (a fresh fork of a single-threaded caller); the stack is
    // ours and outlives the call (no CLONE_VM: the child has its own copy of memory); the
    // child only runs `final_main`, which ends in exec or _exit. CLONE_PARENT makes it the
    // caller's child, so the caller (or, once it is gone, its subreaper) reaps it.
    let pid = unsafe {
        nix::sched::clone(
            cb,
            stack.as_mut_slice(),
            CloneFlags::CLONE_PARENT,
            Some(Signal::SIGCHLD as i32),
        )
    }
    .sys_ctx(|| "start the exec'd process (clone)")?;
    let mut msg = PID.to_vec();
    msg.extend_from_slice(pid.as_raw().to_string().as_bytes());
    nix::sys::socket::send(chan, &msg, MsgFlags::empty())
        .sys_ctx(|| "report the exec'd process's pid")?;
    Ok(())
}

fn final_main(spec: &ExecSpec, chan: RawFd) -> isize {
    let e = match setup(spec, chan) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let _ = nix::sys::socket::send(chan, &e.encode(), MsgFlags::empty());
    // SAFETY: _exit is always safe.
    unsafe { libc::_exit(e.exit_code()) }
}

/// Either the command runs (never returns) or an error comes back.
enum Never {}

fn setup(spec: &ExecSpec, chan: RawFd) -> Result<Never> {
    // A session of its own (the container cannot signal the caller's group), and one a
    // pty can become the controlling terminal of.
    nix::unistd::setsid().sys_ctx(|| "start a new session (setsid)")?;
    if let Some(c) = &spec.console {
        console(c)?;
    }
    for &(res, soft, hard) in &spec.rlimits {
        let lim = libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard,
        };
        // SAFETY: setrlimit with a valid pointer to an initialised struct.
        if unsafe { libc::setrlimit(res as _, &lim) } != 0 {
            return Err(Errcode::sys(
                format!("set rlimit {res} to {soft}:{hard}"),
                Errno::last(),
            ));
        }
    }
    // The init's order: without no_new_privs the filter needs CAP_SYS_ADMIN and goes in
    // before the capabilities go; with it, last.
    crabcan_security::apply_seccomp_before_cap_drop(&spec.security)?;
    crabcan_security::apply_bounding(&spec.security)?;
    set_ids_of(
        spec.uid,
        spec.gid,
        &spec.additional_gids,
        spec.deny_setgroups,
    )?;
    // Changing ids may have made the process dumpable again where the kernel's
    // suid_dumpable allows it; it stays closed until exec.
    nix::sys::prctl::set_dumpable(false).sys_ctx(|| "make the exec'd process non-dumpable")?;
    if let Some(m) = spec.umask {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(m as libc::mode_t));
    }
    crate::exec::chdir_inside(&spec.cwd)?;
    let path = crate::exec::resolve(&spec.argv, &spec.env)?;
    close_from(3 + spec.preserve_fds)?;
    SigSet::empty()
        .thread_set_mask()
        .sys_ctx(|| "restore the signal mask")?;
    // Whatever the runtime's caller ignored (nohup, a shell's background job): a command
    // that starts with SIGHUP or SIGINT ignored cannot even trap what its runtime passes on.
    crate::default_dispositions()?;
    nix::sys::socket::send(chan, READY, MsgFlags::empty()).sys_ctx(|| "talk to the caller")?;
    crabcan_security::apply_final(&spec.security)?;
    let e = match nix::unistd::execve(&path, &spec.argv, &spec.env) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    Err(Errcode::sys(format!("exec {}", path.to_string_lossy()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The order a loaded host can give: the process fails and says so before the joiner's
    /// pid arrives. The pid is still learned (so the caller kills and reaps the process),
    /// and the error is the process's.
    #[test]
    fn an_error_before_the_pid_still_yields_the_pid() {
        let (ours, theirs) = crate::channel().unwrap();
        let failure = Errcode::usage("executable file not found");
        for m in [failure.encode(), [PID, b"4242".as_slice()].concat()] {
            nix::sys::socket::send(theirs.as_raw_fd(), &m, MsgFlags::empty()).unwrap();
        }
        drop(theirs);
        let mut pid = None;
        let e = watch(&ours, &mut pid).unwrap_err();
        assert!(e.to_string().contains("executable file not found"), "{e}");
        assert_eq!(pid, Some(Pid::from_raw(4242)));
    }
}
