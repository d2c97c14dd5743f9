//! The container's network namespace starts with loopback down; bring it up.

use crabcan_errors::{Errcode, Result};
use nix::errno::Errno;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Sets `lo` up in the calling process's network namespace.
pub fn loopback_up() -> Result<()> {
    let what = "bring up the loopback interface lo";
    // SAFETY: plain socket syscall; the fd is wrapped at once.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(Errcode::sys(what, Errno::last()));
    }
    // SAFETY: raw is a fresh fd we own.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: ifreq is plain old data; all zeros is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: ioctl with a valid socket and a properly initialised ifreq.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut req) } < 0 {
        return Err(Errcode::sys(what, Errno::last()));
    }
    // SAFETY: the kernel filled ifru_flags for SIOCGIFFLAGS.
    unsafe { req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
    // SAFETY: as above.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS as _, &req) } < 0 {
        return Err(Errcode::sys(what, Errno::last()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `lo`'s flags in the calling process's network namespace.
    fn lo_flags() -> libc::c_short {
        // SAFETY: plain socket syscall; the fd is wrapped at once.
        let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        assert!(raw >= 0, "socket: {}", Errno::last());
        // SAFETY: raw is a fresh fd we own.
        let sock = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: ifreq is plain old data; all zeros is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        // SAFETY: ioctl with a valid socket and an initialised ifreq.
        let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut req) };
        assert!(r == 0, "SIOCGIFFLAGS: {}", Errno::last());
        // SAFETY: the kernel filled ifru_flags for SIOCGIFFLAGS.
        unsafe { req.ifr_ifru.ifru_flags }
    }

    /// In a fresh network namespace (a user namespace's own, so no privilege is needed)
    /// `lo` starts down and is up and running afterwards. Judged in a forked child, which
    /// alone enters the namespaces; its exit code says which check failed.
    #[test]
    fn loopback_comes_up_in_a_fresh_network_namespace() {
        // SAFETY: the child only makes system calls on its own stack's data and _exits; it
        // never returns into the test harness.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                let code = std::panic::catch_unwind(|| {
                    let ns = libc::CLONE_NEWUSER | libc::CLONE_NEWNET;
                    // SAFETY: unshare of the calling (single-threaded, forked) process.
                    if unsafe { libc::unshare(ns) } != 0 {
                        return 2;
                    }
                    let up = (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
                    if lo_flags() & up != 0 {
                        return 3;
                    }
                    if loopback_up().is_err() {
                        return 4;
                    }
                    if lo_flags() & up != up {
                        return 5;
                    }
                    0
                })
                .unwrap_or(6);
                // SAFETY: _exit in the forked child, skipping the harness's atexit handlers.
                unsafe { libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                let status = nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(
                    status,
                    nix::sys::wait::WaitStatus::Exited(child, 0),
                    "2: no user and network namespace, 3: lo was up already, 4: loopback_up \
                     failed, 5: lo is not up afterwards"
                );
            }
        }
    }
}
