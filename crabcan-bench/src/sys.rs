//! The few system calls the harness needs that std does not offer: `wait4` with its resource
//! usage, and the private mount namespace crun runs in on a hybrid cgroup host. They are
//! declared against the C library that std links anyway, so xtask keeps no dependencies.

use std::ffi::{c_char, c_int, c_long, c_ulong, c_void};
use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

#[repr(C)]
#[derive(Default)]
struct Timeval {
    tv_sec: c_long,
    tv_usec: c_long,
}

/// `struct rusage` as the kernel's generic ABI lays it out (every field a C long).
#[repr(C)]
#[derive(Default)]
struct Rusage {
    ru_utime: Timeval,
    ru_stime: Timeval,
    ru_maxrss: c_long,
    ru_rest: [c_long; 13],
}

unsafe extern "C" {
    fn wait4(pid: c_int, status: *mut c_int, options: c_int, rusage: *mut Rusage) -> c_int;
    fn unshare(flags: c_int) -> c_int;
    fn mount(
        source: *const c_char,
        target: *const c_char,
        fstype: *const c_char,
        flags: c_ulong,
        data: *const c_void,
    ) -> c_int;
    fn umount2(target: *const c_char, flags: c_int) -> c_int;
}

const CLONE_NEWNS: c_int = 0x0002_0000;
const MS_REC: c_ulong = 0x4000;
const MS_PRIVATE: c_ulong = 1 << 18;
const MNT_DETACH: c_int = 2;

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

fn decode(status: c_int) -> i32 {
    if status & 0x7f == 0 {
        (status >> 8) & 0xff
    } else {
        128 + (status & 0x7f)
    }
}

/// Waits for `pid` (or any child for -1), retrying on EINTR.
pub fn wait(pid: i32) -> io::Result<Reaped> {
    let mut status: c_int = 0;
    let mut ru = Rusage::default();
    loop {
        // SAFETY: both pointers are to live, properly laid out locals.
        let r = unsafe { wait4(pid, &mut status, 0, &mut ru) };
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
            if unshare(CLONE_NEWNS) != 0 {
                return Err(io::Error::last_os_error());
            }
            // Private first, so the umount cannot propagate back to the host.
            if mount(
                c"none".as_ptr(),
                c"/".as_ptr(),
                std::ptr::null(),
                MS_REC | MS_PRIVATE,
                std::ptr::null(),
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            if umount2(c"/sys/fs/cgroup/unified".as_ptr(), MNT_DETACH) != 0 {
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
