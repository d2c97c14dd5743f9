//! crabcan runs from a sealed in-memory copy of its own binary, so that no process in a
//! container can ever reach the host's crabcan executable for writing.
//!
//! The attack this closes (the CVE-2019-5736 class): until a container's process execs
//! its command it runs crabcan's image, so `/proc/self/exe` names crabcan's binary; an
//! image whose entry point is `#!/proc/self/exe` makes the kernel execute that binary
//! inside the container (with the image's dynamic loader), and the attacker's code then
//! holds a path to the host binary and can rewrite it once crabcan exits. Running from a
//! sealed memfd means `/proc/self/exe` of every crabcan process is that memfd: a private,
//! write-sealed copy, never the file on the host.
//!
//! The alternative, a read-only bind of the binary in a private mount namespace, needs
//! privilege to mount and so would not cover an ordinary user; the copy costs one
//! `sendfile` of the binary and one `execveat` per run (about 0.9 ms for the static release
//! build here). It is skipped when no id the container maps could write the binary anyway
//! ([`exe_writable_by`]): root's default container, whose ids are an unprivileged range of
//! its own, gets EACCES from the file's modes, and pays nothing.

use crabcan_errors::{Errcode, Result, SysContext};
use nix::errno::Errno;
use std::ffi::{CString, OsString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;

/// The seals that make the copy immutable.
const SEALS: libc::c_int =
    libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;

/// `MFD_EXEC` (Linux 6.3): asks for an executable memfd where `vm.memfd_noexec` allows it.
const MFD_EXEC: libc::c_uint = 0x10;

fn open_self_exe() -> Result<OwnedFd> {
    let fd = nix::fcntl::open(
        "/proc/self/exe",
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .sys_ctx(|| "open crabcan's own binary (/proc/self/exe)")?;
    Ok(fd)
}

fn is_sealed(fd: &OwnedFd) -> bool {
    // SAFETY: F_GET_SEALS only reads the seals of a valid fd; a file that is not a memfd
    // answers EINVAL.
    let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
    seals >= 0 && seals & SEALS == SEALS
}

/// Whether a process with any of the host ids `uids`/`gids` (inclusive ranges), even with
/// every capability in its own user namespace, could open crabcan's binary for writing:
/// it owns the file or its group, or the file is writable by others, or an access ACL
/// might grant it. When in doubt, yes.
pub fn exe_writable_by(uids: &[(u32, u32)], gids: &[(u32, u32)]) -> Result<bool> {
    let exe = open_self_exe()?;
    if is_sealed(&exe) {
        return Ok(false);
    }
    let st = nix::sys::stat::fstat(&exe).sys_ctx(|| "stat crabcan's own binary")?;
    let has_acl = {
        let mut buf = [0u8; 1];
        // SAFETY: fgetxattr into a live one-byte buffer (only the presence matters: a size
        // or ERANGE means there is an access ACL).
        let r = unsafe {
            libc::fgetxattr(
                exe.as_raw_fd(),
                c"system.posix_acl_access".as_ptr(),
                buf.as_mut_ptr().cast(),
                0,
            )
        };
        r >= 0 || Errno::last() != Errno::ENODATA
    };
    Ok(writable_by(
        st.st_mode, st.st_uid, st.st_gid, has_acl, uids, gids,
    ))
}

/// The decision of [`exe_writable_by`], on plain values.
fn writable_by(
    mode: u32,
    uid: u32,
    gid: u32,
    has_acl: bool,
    uids: &[(u32, u32)],
    gids: &[(u32, u32)],
) -> bool {
    let inside = |id: u32, ranges: &[(u32, u32)]| ranges.iter().any(|&(a, b)| a <= id && id <= b);
    // An owned inode (uid or gid mapped) is also one the container's capabilities
    // (CAP_DAC_OVERRIDE, CAP_FOWNER) apply to.
    has_acl || mode & 0o002 != 0 || inside(uid, uids) || inside(gid, gids)
}

/// Re-executes crabcan from a sealed memfd copy of its binary unless it runs from one
/// already; returns only in the copy (or with an error). Call it first thing in `main`,
/// while single-threaded; `args` and `env` are passed on unchanged.
pub fn reexec_sealed(args: Vec<OsString>, env: Vec<(OsString, OsString)>) -> Result<()> {
    let exe = open_self_exe()?;
    if is_sealed(&exe) {
        return Ok(());
    }
    let copy = sealed_copy(&exe)?;
    drop(exe);
    let cstr =
        |v: Vec<u8>| CString::new(v).map_err(|_| Errcode::usage("an argument contains a NUL byte"));
    let argv = args
        .into_iter()
        .map(|a| cstr(a.into_vec()))
        .collect::<Result<Vec<_>>>()?;
    let envp = env
        .into_iter()
        .map(|(k, v)| {
            let mut kv = k.into_vec();
            kv.push(b'=');
            kv.extend(v.into_vec());
            cstr(kv)
        })
        .collect::<Result<Vec<_>>>()?;
    let e =
        match nix::unistd::execveat(&copy, c"", &argv, &envp, nix::fcntl::AtFlags::AT_EMPTY_PATH) {
            Err(e) => e,
            Ok(never) => match never {},
        };
    let err = Errcode::sys("run crabcan from its sealed in-memory copy (execveat)", e);
    Err(match e {
        Errno::EACCES | Errno::EPERM => {
            err.with_hint("the sysctl vm.memfd_noexec may forbid executable memfds; set it to 0")
        }
        _ => err,
    })
}

/// A write-sealed memfd holding the bytes of `exe`.
fn sealed_copy(exe: &OwnedFd) -> Result<OwnedFd> {
    let create = |flags: libc::c_uint| {
        // SAFETY: memfd_create with a static name; the result is a new fd we own.
        let fd = unsafe { libc::memfd_create(c"crabcan".as_ptr(), flags) };
        if fd < 0 {
            Err(Errno::last())
        } else {
            // SAFETY: the kernel just returned this fd to us.
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        }
    };
    let base = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    let mfd = match create(base | MFD_EXEC) {
        Err(Errno::EINVAL) => create(base),
        r => r,
    }
    .sys_ctx(|| "create an in-memory copy of crabcan's binary (memfd_create)")?;
    let size = nix::sys::stat::fstat(exe)
        .sys_ctx(|| "stat crabcan's own binary")?
        .st_size as usize;
    let mut left = size;
    while left > 0 {
        match nix::sys::sendfile::sendfile(&mfd, exe, None, left) {
            Ok(0) => break,
            Ok(n) => left -= n,
            Err(Errno::EINTR) => {}
            Err(e) => {
                return Err(Errcode::sys(
                    "copy crabcan's binary into memory (sendfile)",
                    e,
                ));
            }
        }
    }
    if left != 0 {
        return Err(Errcode::setup(format!(
            "crabcan's binary shrank while it was copied ({left} of {size} bytes missing)"
        )));
    }
    // SAFETY: F_ADD_SEALS on a memfd we own, with constant flags.
    if unsafe { libc::fcntl(mfd.as_raw_fd(), libc::F_ADD_SEALS, SEALS) } < 0 {
        return Err(Errcode::sys(
            "seal the in-memory copy of crabcan's binary",
            Errno::last(),
        ));
    }
    if !is_sealed(&mfd) {
        return Err(Errcode::setup(
            "the in-memory copy of crabcan's binary did not keep its seals",
        ));
    }
    // Executed through a read-only descriptor: with the writable one closed, nothing holds
    // the copy open for writing, which exec could refuse (ETXTBSY).
    let ro = nix::fcntl::open(
        format!("/proc/self/fd/{}", mfd.as_raw_fd()).as_str(),
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .sys_ctx(|| "reopen the in-memory copy of crabcan's binary read-only")?;
    Ok(ro)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_binary_no_mapped_id_can_write_is_left_as_it_is() {
        let range = [(3_221_225_472, 3_221_291_007)];
        // root:root 0755, an unprivileged range: safe.
        assert!(!writable_by(0o100755, 0, 0, false, &range, &range));
        // The identity map owns it.
        let ident = [(0, 65_535)];
        assert!(writable_by(0o100755, 0, 0, false, &ident, &ident));
        // Writable by others, an ACL, an owner or group inside the range: not safe.
        assert!(writable_by(0o100757, 0, 0, false, &range, &range));
        assert!(writable_by(0o100755, 0, 0, true, &range, &range));
        assert!(writable_by(
            0o100755,
            3_221_225_472,
            0,
            false,
            &range,
            &range
        ));
        assert!(writable_by(
            0o100755,
            0,
            3_221_291_007,
            false,
            &range,
            &range
        ));
        // An ordinary user's own binary, mapped to root inside.
        assert!(writable_by(
            0o100755,
            1000,
            1000,
            false,
            &[(1000, 1000)],
            &[(1000, 1000)]
        ));
        assert!(!writable_by(
            0o100755,
            0,
            0,
            false,
            &[(1000, 1000)],
            &[(1000, 1000)]
        ));
    }

    #[test]
    fn a_sealed_copy_is_recognised_and_refuses_writes() {
        let exe = open_self_exe().unwrap();
        assert!(!is_sealed(&exe), "the test binary is a plain file");
        let copy = sealed_copy(&exe).unwrap();
        assert!(is_sealed(&copy));
        let len = |fd: &OwnedFd| nix::sys::stat::fstat(fd).unwrap().st_size;
        assert_eq!(len(&copy), len(&exe));
        // Reopened for writing through /proc (as an attacker would), the copy refuses.
        let path = format!("/proc/self/fd/{}", copy.as_raw_fd());
        let w = std::fs::OpenOptions::new().write(true).open(&path);
        match w {
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}"),
            Ok(mut f) => {
                use std::io::Write;
                let e = f.write_all(b"x").unwrap_err();
                assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}");
            }
        }
    }
}
