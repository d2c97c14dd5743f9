//! Credential changes as the system calls themselves.
//!
//! The C library's wrappers of `setgroups`, `setresgid` and `setresuid` apply the change to
//! every thread of the process: musl blocks every signal around it and restores the mask
//! afterwards, three system calls more for each (nine in a container's start). The
//! processes that change ids here have one thread (the container's process, cloned
//! without `CLONE_THREAD`, and the processes it forks), where the call itself does the
//! same.

use nix::errno::Errno;

// 32-bit x86 and Arm keep the 16-bit calls under the plain names; the 32-bit ids have their
// own there.
#[cfg(not(any(target_arch = "x86", target_arch = "arm")))]
use libc::{
    SYS_setgroups as SYS_SETGROUPS, SYS_setresgid as SYS_SETRESGID, SYS_setresuid as SYS_SETRESUID,
};
#[cfg(any(target_arch = "x86", target_arch = "arm"))]
use libc::{
    SYS_setgroups32 as SYS_SETGROUPS, SYS_setresgid32 as SYS_SETRESGID,
    SYS_setresuid32 as SYS_SETRESUID,
};

/// Sets the supplementary groups.
///
/// # Safety
/// The calling process has one thread: another thread would keep the groups it had.
pub(crate) unsafe fn setgroups(groups: &[u32]) -> nix::Result<()> {
    // SAFETY: the kernel reads `groups.len()` gids from `groups`, which outlives the call.
    let r = unsafe { libc::syscall(SYS_SETGROUPS, groups.len(), groups.as_ptr()) };
    Errno::result(r).map(drop)
}

/// Sets the real, effective and saved gid to `gid`.
///
/// # Safety
/// The calling process has one thread: another thread would keep the gids it had.
pub(crate) unsafe fn setresgid(gid: u32) -> nix::Result<()> {
    // SAFETY: plain integers; no memory is passed.
    let r = unsafe { libc::syscall(SYS_SETRESGID, gid, gid, gid) };
    Errno::result(r).map(drop)
}

/// Sets the real, effective and saved uid to `uid`.
///
/// # Safety
/// The calling process has one thread: another thread would keep the uids it had.
pub(crate) unsafe fn setresuid(uid: u32) -> nix::Result<()> {
    // SAFETY: plain integers; no memory is passed.
    let r = unsafe { libc::syscall(SYS_SETRESUID, uid, uid, uid) };
    Errno::result(r).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In a forked (so single-threaded) process, each call sets what it names: the ids
    /// the process has and may set again, and, as root, other ids and groups too.
    #[test]
    fn each_call_sets_the_ids_it_names() {
        let root = nix::unistd::geteuid().is_root();
        // SAFETY: the forked child only makes system calls and _exits.
        match unsafe { nix::unistd::fork() }.expect("fork") {
            nix::unistd::ForkResult::Child => {
                let (uid, gid, groups) = if root {
                    (4321, 8765, vec![11, 22])
                } else {
                    (
                        nix::unistd::getuid().as_raw(),
                        nix::unistd::getgid().as_raw(),
                        Vec::new(),
                    )
                };
                // SAFETY: this forked process has one thread.
                let ok = unsafe {
                    (!root || setgroups(&groups).is_ok())
                        && setresgid(gid).is_ok()
                        && setresuid(uid).is_ok()
                };
                let r = nix::unistd::getresuid().unwrap();
                let g = nix::unistd::getresgid().unwrap();
                let got: Vec<u32> = nix::unistd::getgroups()
                    .unwrap()
                    .iter()
                    .map(|g| g.as_raw())
                    .collect();
                let same = [r.real, r.effective, r.saved]
                    .iter()
                    .all(|u| u.as_raw() == uid)
                    && [g.real, g.effective, g.saved]
                        .iter()
                        .all(|x| x.as_raw() == gid)
                    && (!root || got == groups);
                // SAFETY: _exit is always safe.
                unsafe { libc::_exit(if ok && same { 0 } else { 1 }) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                let st = nix::sys::wait::waitpid(child, None).expect("wait");
                assert_eq!(st, nix::sys::wait::WaitStatus::Exited(child, 0));
            }
        }
    }
}
