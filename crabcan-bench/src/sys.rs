//! The few system calls the harness needs that std does not offer: `wait4` with its resource
//! usage, and the private mount namespace crun runs in on a hybrid cgroup host.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

/// How one reaped process ended and what it used.
#[derive(Debug, Clone, Copy)]
pub struct Reaped {
    /// The process reaped.
    pub pid: i32,
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
                pid: r,
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

/// A mount namespace held open by a descriptor: the crun workaround made once, so that the
/// runs entered into it pay one `setns` instead of an unshare and an umount each.
#[derive(Debug)]
pub struct HeldNamespace {
    fd: std::os::fd::OwnedFd,
}

impl HeldNamespace {
    /// A private mount namespace without the cgroup v2 mount of a hybrid host: a short-lived
    /// child makes it ([`without_unified_cgroup`]); its descriptor keeps it after the child is
    /// gone.
    pub fn without_unified_cgroup() -> io::Result<HeldNamespace> {
        let mut cmd = Command::new("/bin/sleep");
        cmd.arg("60")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null());
        without_unified_cgroup(&mut cmd);
        let mut child = cmd.spawn()?;
        // spawn returns once the child has exec'd, so it is in its new namespace by now.
        let opened = std::fs::File::open(format!("/proc/{}/ns/mnt", child.id()));
        let _ = child.kill();
        let _ = child.wait();
        Ok(HeldNamespace { fd: opened?.into() })
    }

    /// Makes `cmd` enter this namespace before exec.
    pub fn enter(&self, cmd: &mut Command) {
        use std::os::fd::AsRawFd;
        let fd = self.fd.as_raw_fd();
        // SAFETY: the hook makes one raw system call on a descriptor that outlives the spawn
        // (the command borrows nothing else): no allocation, no locks.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNS) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}

/// Makes this process the reaper of its orphaned descendants (or stops being one), so that a
/// process a runtime's `create` leaves behind becomes a child of the harness, where it can be
/// found, and the container's process can be waited for.
pub fn set_subreaper(on: bool) -> io::Result<()> {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes one integer argument and touches no memory.
    if unsafe {
        libc::prctl(
            libc::PR_SET_CHILD_SUBREAPER,
            libc::c_ulong::from(on),
            0,
            0,
            0,
        )
    } != 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The pids whose parent is this process.
pub fn own_children() -> Vec<i32> {
    let me = std::process::id().to_string();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                // The command name may hold spaces and parentheses: fields follow the last ')'.
                s.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1).map(|pp| pp == me))
                    .unwrap_or(false)
            })
        })
        .collect()
}

/// Reaps every exited child without waiting; returns how many.
pub fn reap_exited() -> usize {
    let mut n = 0;
    let mut status = 0;
    // SAFETY: `status` is a live local; WNOHANG never blocks.
    while unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) } > 0 {
        n += 1;
    }
    n
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

/// Held by each test that spawns processes and waits for them: a test that reaps any exited
/// child ([`reap_exited`], as the OCI lifecycle does) would otherwise take another test's
/// child from under its `wait4`, and a subreaper test counts whatever else runs beside it.
#[cfg(test)]
pub(crate) fn children_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
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
        let _children = children_lock();
        let exited = reaped("exit 3");
        assert_eq!(exited.code, 3);
        assert!(exited.maxrss_kib > 0);
        assert_eq!(reaped("kill -9 $$").code, 128 + 9);
    }
}
