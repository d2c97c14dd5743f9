//! The few system calls the harness needs that std does not offer: `wait4` with its resource
//! usage, and the private mount namespace crun runs in on a hybrid cgroup host.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

/// How one reaped process ended and what it used.
#[derive(Debug, Clone, Copy)]
pub struct Reaped {
    /// Exit code, or 128 + signal number when killed.
    pub code: i32,
    /// Peak resident set of the process and its reaped descendants, in KiB.
    pub maxrss_kib: u64,
}

/// One timed run: spawn, then wait for that very process.
#[derive(Debug, Clone, Copy)]
pub struct Timed {
    /// From just before `spawn` to just after `wait4` returned.
    pub elapsed: Duration,
    /// What `wait4` reported.
    pub reaped: Reaped,
}

fn decode(status: libc::c_int) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    }
}

/// Waits for `pid` (or any child for -1), retrying on EINTR.
pub fn wait(pid: i32) -> io::Result<Reaped> {
    let mut status: libc::c_int = 0;
    // SAFETY: `rusage` is plain integers, for which all zero bytes are a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: both pointers are to live, properly laid out locals.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r > 0 {
            return Ok(Reaped {
                code: decode(status),
                maxrss_kib: u64::try_from(ru.ru_maxrss).unwrap_or(0),
            });
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Makes std spawn `cmd` with fork + exec instead of posix_spawn's vfork, for every runtime
/// alike. Why: `ru_maxrss` keeps the peak of the memory image a process had before `execve`,
/// and a vfork child's image is the whole harness, while a fork child only carries a copy of
/// the harness's small anonymous memory. The floor this leaves is measured and reported.
pub fn use_fork(cmd: &mut Command) {
    // SAFETY: the hook does nothing, so it is trivially async-signal-safe.
    unsafe {
        cmd.pre_exec(|| Ok(()));
    }
}

/// Runs `cmd` in its own mount namespace without the cgroup v2 mount of a hybrid host, so that
/// crun sees a plain cgroup v1 layout (it refuses hybrid ones). Costs one unshare and one umount
/// in the forked child, far less than the documented `unshare -m sh -c 'umount …'` wrapper.
pub fn without_unified_cgroup(cmd: &mut Command) {
    // SAFETY: the hook only makes raw system calls on static C strings: no allocation, no locks.
    unsafe {
        cmd.pre_exec(|| {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(io::Error::last_os_error());
            }
            // Private first, so the umount cannot propagate back to the host.
            if libc::mount(
                c"none".as_ptr(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            if libc::umount2(c"/sys/fs/cgroup/unified".as_ptr(), libc::MNT_DETACH) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Spawns `cmd` and waits for it; the time covers exactly spawn + wait, no shell in between.
pub fn run_timed(cmd: &mut Command) -> io::Result<Timed> {
    let start = Instant::now();
    let child = cmd.spawn()?;
    let reaped = wait(child_pid(&child)?)?;
    let elapsed = start.elapsed();
    Ok(Timed { elapsed, reaped })
}

/// The pid of a spawned child as the C API wants it.
pub fn child_pid(child: &std::process::Child) -> io::Result<i32> {
    i32::try_from(child.id()).map_err(|_| io::Error::other("child pid out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reaped(script: &str) -> Reaped {
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", script]);
        run_timed(&mut cmd).unwrap().reaped
    }

    #[test]
    fn reports_exit_codes_signals_and_memory() {
        let exited = reaped("exit 3");
        assert_eq!(exited.code, 3);
        assert!(exited.maxrss_kib > 0);
        assert_eq!(reaped("kill -9 $$").code, 128 + 9);
    }
}
