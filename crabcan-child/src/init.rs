//! The container's init: PID 1 of its PID namespace, crabcan code, non-dumpable.
//!
//! It starts the command, forwards the signals it gets to it, reaps every process that is
//! orphaned into it, and exits with the command's status as soon as the command ends.
//! Because it is PID 1, its death (with crabcan: it has the parent-death signal) makes the
//! kernel kill every process of the namespace: the command cannot outlive crabcan by
//! clearing its own parent-death signal or by daemonising.

use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// Signals the init passes on to the command. SIGKILL and SIGSTOP cannot be caught, and
/// the synchronous faults (SIGSEGV, SIGBUS, …) are the init's own.
pub const INIT_FORWARDS: &[Signal] = &[
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGPIPE,
    Signal::SIGALRM,
    Signal::SIGTERM,
    Signal::SIGCONT,
    Signal::SIGTSTP,
    Signal::SIGTTIN,
    Signal::SIGTTOU,
    Signal::SIGWINCH,
];

fn init_set() -> SigSet {
    let mut set = SigSet::empty();
    for s in INIT_FORWARDS {
        set.add(*s);
    }
    set.add(Signal::SIGCHLD);
    set
}

/// Blocks what the init takes with `sigwait`, before it starts the command (which restores
/// its own mask before exec), so no signal is lost between the start and the loop.
pub fn block() -> nix::Result<()> {
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&init_set()), None)
}

/// The init's loop: returns the command's exit code (128+N when killed by signal N).
pub fn serve(command: Pid) -> i32 {
    let set = init_set();
    loop {
        if let Some(code) = reap(command) {
            return code;
        }
        match set.wait() {
            Ok(Signal::SIGCHLD) | Err(_) => {}
            Ok(sig) => {
                let _ = nix::sys::signal::kill(command, sig);
            }
        }
    }
}

/// Reaps every exited child; returns the command's code once it has ended.
fn reap(command: Pid) -> Option<i32> {
    loop {
        let code = match nix::sys::wait::waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, c)) => (pid, c),
            Ok(WaitStatus::Signaled(pid, s, _)) => (pid, 128 + s as i32),
            Ok(WaitStatus::StillAlive) => return None,
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(_) => return None,
        };
        if code.0 == command {
            return Some(code.1);
        }
    }
}
