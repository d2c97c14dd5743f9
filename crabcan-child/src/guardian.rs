//! A guardian process that cleans up on the host if crabcan is SIGKILLed.
//!
//! A killed process cannot clean up after itself; its container dies with it (parent-death
//! signal) and the mount namespace goes, but what crabcan wrote on the host (mount points it
//! had to create in a `--mount` root) would stay. The guardian is forked before the
//! container; it waits on a pipe whose only writer is crabcan. A byte means crabcan finished
//! and cleaned up itself; EOF without one means crabcan died: the guardian then runs the
//! cleanup and exits.

use crabcan_errors::{Result, SysContext};
use nix::errno::Errno;
use nix::unistd::{ForkResult, Pid};
use std::os::fd::{AsFd, OwnedFd};

/// A running guardian; [`Guardian::dismiss`] (or drop) ends it without cleaning up.
pub struct Guardian {
    pid: Pid,
    tx: Option<OwnedFd>,
}

/// Forks a guardian that calls `cleanup` if this process dies before dismissing it.
/// The caller must be single-threaded (it forks).
pub fn guardian(cleanup: &mut dyn FnMut()) -> Result<Guardian> {
    let (rx, tx) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .sys_ctx(|| "create the guardian's pipe")?;
    // SAFETY: the caller is single-threaded; the child only reads a pipe, runs `cleanup`
    // (plain syscalls on data it owns) and _exits.
    match unsafe { nix::unistd::fork() }.sys_ctx(|| "fork the cleanup guardian")? {
        ForkResult::Child => {
            drop(tx);
            let mut byte = [0u8; 1];
            let n = loop {
                match nix::unistd::read(rx.as_fd(), &mut byte) {
                    Err(Errno::EINTR) => continue,
                    r => break r.unwrap_or(0),
                }
            };
            if n == 0 {
                cleanup();
            }
            // SAFETY: _exit skips the parent's atexit handlers and buffers, as it must here.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => Ok(Guardian {
            pid: child,
            tx: Some(tx),
        }),
    }
}

impl Guardian {
    /// Tells the guardian all is well (crabcan cleaned up itself); reaps it if it is gone
    /// already (otherwise it ends on its own and the process that inherits it reaps it).
    pub fn dismiss(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = nix::unistd::write(&tx, b"d");
            drop(tx);
            // Reaped if it is gone already; otherwise it ends on its own in a moment and
            // is reaped by whoever inherits it when this process exits. Waiting for its
            // exit would add a scheduling round trip to every run.
            let _ = nix::sys::wait::waitpid(self.pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
        }
    }
}

impl Drop for Guardian {
    fn drop(&mut self) {
        self.stop();
    }
}
