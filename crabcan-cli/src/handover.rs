//! A foreground `run` or `exec` with no crabcan code beside the container while it runs.
//!
//! A process that enters the container runs crabcan's code where the container can reach
//! its executable (/proc/PID/exe, the CVE-2019-5736 class), and only until it execs the
//! container's command: that is what the read-only view of the binary is for
//! ([`crabcan_child::ImageUse::UntilStart`]). A foreground command also *waits* for the
//! process, as long as it runs, and a process running from the view all that time would be
//! killed by a rewrite of the host's file in place. So a foreground command is two processes:
//!
//! - the *waiter*, the process the caller started (the binary as installed), makes itself
//!   the subreaper of what it starts, blocks the signals it forwards and forks;
//! - the *starter*, the fork, re-executes through the view, starts the process as `--detach`
//!   would, writes its pid to a pipe and exits. The process is reparented to the waiter,
//!   which waits for it and forwards signals to it.
//!
//! The waiter is in the caller's pid namespace, not the container's, and not dumpable:
//! nothing in the container can open its executable.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crabcan_errors::{Errcode, Result};
use nix::sys::signal::{SigmaskHow, sigprocmask};
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;

/// Names, in the starter's environment, the descriptor its pid report goes to.
const ENV: &str = "_CRABCAN_WAITER_FD";

/// Runs a foreground command as waiter and starter (see the module's documentation):
/// `start`, in the starter, starts the process detached and returns its pid; `wait`, in the
/// waiter, waits for that process and returns the command's exit code. Called before
/// anything of the container exists; the caller must be single-threaded.
pub(crate) fn foreground(
    start: impl FnOnce() -> Result<Pid>,
    wait: impl FnOnce(Pid) -> Result<i32>,
) -> Result<i32> {
    match split()? {
        Role::Starter(fd) => report(fd, start()?).map(|()| 0),
        Role::Waiter(pid) => wait(pid),
        Role::Failed(code) => Ok(code),
    }
}

/// Whether this process is the starter of a foreground command: its waiter has decided
/// already how the command runs.
pub(crate) fn is_starter() -> bool {
    std::env::var_os(ENV).is_some()
}

/// Which half of a foreground command this process is.
enum Role {
    /// Start the process detached, then [`report`] its pid here.
    Starter(OwnedFd),
    /// The started process, now this process's child: wait for it.
    Waiter(Pid),
    /// The starter failed and said why on stderr; exit with this code.
    Failed(i32),
}

/// Splits a foreground command into waiter and starter.
fn split() -> Result<Role> {
    if let Some(v) = std::env::var_os(ENV) {
        // Whoever set the variable, the starter runs only from a protected image: this
        // returns at once when it already does (the descriptor is still inherited).
        crabcan_child::reexec_sealed(
            std::env::args_os().collect(),
            std::env::vars_os().collect(),
            crabcan_child::ImageUse::UntilStart,
        )?;
        let fd = inherited(&v)?;
        // SAFETY: the process is single-threaded (documented), so nothing reads the
        // environment meanwhile.
        unsafe { std::env::remove_var(ENV) };
        return Ok(Role::Starter(fd));
    }
    // Blocked before the process exists, so no signal meant for it is lost: what arrives
    // now waits until `wait_forwarding` takes it.
    let old = crabcan_child::block_signals()?;
    nix::sys::prctl::set_child_subreaper(true)
        .map_err(|e| Errcode::sys("become the subreaper of the container's process", e))?;
    // Ours reads, theirs (the starter's) writes.
    let (ours, theirs) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Errcode::sys("create the pipe for the started process's pid", e))?;
    if let Some(image) = crabcan_child::protected_image(crabcan_child::ImageUse::UntilStart)? {
        // The starter's image is made here, so the starter is spawned from it at once: no
        // copy of this process's memory as a fork would make (std spawns with a vfork),
        // and it starts with an empty signal mask. The image, close-on-exec, goes with the
        // exec; the pipe's end does not.
        set_cloexec(&theirs, false)?;
        let mut args = std::env::args_os();
        let mut cmd = std::process::Command::new(image.path());
        if let Some(arg0) = args.next() {
            std::os::unix::process::CommandExt::arg0(&mut cmd, arg0);
        }
        cmd.args(args).env(ENV, theirs.as_raw_fd().to_string());
        let spawned = cmd.spawn();
        drop(theirs);
        drop(image);
        let child = spawned.map_err(|e| {
            Errcode::setup(format!(
                "cannot start the process that starts the container: {e}"
            ))
        })?;
        return await_starter(ours, Pid::from_raw(child.id() as i32));
    }
    // This image is protected already: the starter is a fork that goes on in it.
    crabcan_child::ensure_single_threaded("fork the process that starts the container")?;
    // SAFETY: single-threaded (checked just above); the child goes on as an ordinary
    // single-threaded process and ends by exec or by exiting.
    match unsafe { nix::unistd::fork() }
        .map_err(|e| Errcode::sys("fork the process that starts the container", e))?
    {
        nix::unistd::ForkResult::Child => {
            drop(ours);
            sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None)
                .map_err(|e| Errcode::sys("restore the signal mask", e))?;
            Ok(Role::Starter(theirs))
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(theirs);
            await_starter(ours, child)
        }
    }
}

/// The waiter's side: reads the pid the starter `child` reports on `ours` and reaps it.
fn await_starter(ours: OwnedFd, child: Pid) -> Result<Role> {
    nix::sys::prctl::set_dumpable(false)
        .map_err(|e| Errcode::sys("make the waiting process non-dumpable", e))?;
    let mut text = String::new();
    let read = std::fs::File::from(ours).read_to_string(&mut text);
    let status = loop {
        match nix::sys::wait::waitpid(child, None) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => break r,
        }
    };
    // A pid reported is a process that runs and is ours now, whatever became of the
    // starter after it wrote it.
    // Never 0 or negative: a signal forwarded to those would reach a process group
    // or every process.
    let reported = read.ok().and_then(|_| text.trim().parse::<i32>().ok());
    if let Some(pid) = reported.filter(|&p| p > 0) {
        return Ok(Role::Waiter(Pid::from_raw(pid)));
    }
    match status {
        Ok(WaitStatus::Exited(_, code)) if code != 0 => Ok(Role::Failed(code)),
        Ok(WaitStatus::Signaled(_, sig, _)) => Err(Errcode::setup(format!(
            "the process that starts the container was killed by {sig}"
        ))),
        Ok(s) => Err(Errcode::setup(format!(
            "the process that starts the container ended without a pid ({s:?})"
        ))),
        Err(e) => Err(Errcode::sys(
            "wait for the process that starts the container",
            e,
        )),
    }
}

/// The starter's side: hands `pid` to the waiter.
fn report(fd: OwnedFd, pid: Pid) -> Result<()> {
    std::fs::File::from(fd)
        .write_all(pid.as_raw().to_string().as_bytes())
        .map_err(|e| Errcode::setup(format!("cannot hand the started process's pid over: {e}")))
}

/// The descriptor named by the environment: a pipe's, above stdio, close-on-exec from now.
fn inherited(v: &std::ffi::OsStr) -> Result<OwnedFd> {
    let bad = || {
        Errcode::usage(format!(
            "{ENV}={}: not a pipe crabcan handed over",
            v.to_string_lossy()
        ))
    };
    let raw: i32 = v.to_str().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    if raw <= 2 {
        return Err(bad());
    }
    // SAFETY: fstat writes only into the zeroed struct; any number is safe to ask about.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::fstat(raw, &mut st) } != 0 || st.st_mode & libc::S_IFMT != libc::S_IFIFO {
        return Err(bad());
    }
    // SAFETY: an open descriptor (fstat succeeded) that nothing else in this process owns:
    // it was inherited for this use only.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    set_cloexec(&fd, true)?;
    Ok(fd)
}

fn set_cloexec(fd: &OwnedFd, on: bool) -> Result<()> {
    let flags = if on {
        nix::fcntl::FdFlag::FD_CLOEXEC
    } else {
        nix::fcntl::FdFlag::empty()
    };
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(flags))
        .map(drop)
        .map_err(|e| Errcode::sys("set close-on-exec on the pid pipe", e))
}
