//! Thin helpers over raw system calls: every call reports its errno, nothing panics.

use std::ffi::{CStr, CString};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

pub use nix::errno::Errno;

/// The result of a raw call: the kernel's return value or the errno it set.
pub type SysResult = Result<libc::c_long, Errno>;

/// Turns a `-1`-on-error return value into a result carrying the errno.
pub fn ret(r: libc::c_long) -> SysResult {
    if r == -1 { Err(Errno::last()) } else { Ok(r) }
}

/// Same as [`ret`] for calls that return a C int.
pub fn reti(r: libc::c_int) -> SysResult {
    ret(libc::c_long::from(r))
}

/// An errno as `EPERM (Operation not permitted)`.
pub fn en(e: Errno) -> String {
    format!("{e:?} ({})", e.desc())
}

/// A result as `ok (N)` or its errno, for messages that list several steps.
pub fn show(r: &SysResult) -> String {
    match r {
        Ok(v) => format!("ok ({v})"),
        Err(e) => en(*e),
    }
}

/// Errnos that mean "the kernel or the filter refused": permission, a read-only mount,
/// or the call being unavailable (the filter answers ENOSYS for calls it does not know).
pub fn refused(e: Errno) -> bool {
    matches!(
        e,
        Errno::EPERM | Errno::EACCES | Errno::ENOSYS | Errno::EROFS
    )
}

/// A path as a C string; a path with a NUL byte cannot be passed to the kernel.
pub fn cpath(p: &Path) -> Result<CString, String> {
    CString::new(p.as_os_str().as_encoded_bytes())
        .map_err(|_| format!("path {} contains a NUL byte", p.display()))
}

/// `open(2)` returning an owned descriptor (closed on drop, close-on-exec always).
pub fn open(path: &CStr, flags: libc::c_int) -> Result<OwnedFd, Errno> {
    // SAFETY: path is a valid NUL-terminated string; the mode is ignored without O_CREAT.
    let fd = unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC, 0o600) };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: the kernel just gave us this descriptor and nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Owns a descriptor returned by a raw syscall so that it is closed on every path.
pub fn own(fd: libc::c_long) -> Option<OwnedFd> {
    let fd = libc::c_int::try_from(fd).ok()?;
    // SAFETY: callers pass only descriptors fresh from the kernel, owned by nobody else.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `stat(2)` of a path.
pub fn stat(path: &CStr) -> Result<libc::stat, Errno> {
    // SAFETY: an all-zero stat buffer is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: path is NUL-terminated and st is a writable buffer of the right type.
    reti(unsafe { libc::stat(path.as_ptr(), &mut st) })?;
    Ok(st)
}

/// `lstat(2)` of a path (does not follow a final symlink).
pub fn lstat(path: &CStr) -> Result<libc::stat, Errno> {
    // SAFETY: as in `stat`.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: path is NUL-terminated and st is a writable buffer of the right type.
    reti(unsafe { libc::lstat(path.as_ptr(), &mut st) })?;
    Ok(st)
}

/// The filesystem magic number of an open file (tells a real proc file from a mask).
pub fn fs_magic(fd: libc::c_int) -> Result<i64, Errno> {
    // SAFETY: an all-zero statfs buffer is a valid value of this plain C struct.
    let mut sfs: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: sfs is a writable buffer of the right type; a bad fd only yields EBADF.
    reti(unsafe { libc::fstatfs(fd, &mut sfs) })?;
    #[allow(clippy::unnecessary_cast)] // f_type's width differs between C libraries
    Ok(sfs.f_type as i64)
}

/// The proc filesystem's magic number (PROC_SUPER_MAGIC).
pub const PROC_MAGIC: i64 = 0x9fa0;

/// Waits for a child and returns its raw wait status, retrying on EINTR.
pub fn wait_child(pid: libc::pid_t) -> Result<libc::c_int, Errno> {
    let mut status = 0;
    loop {
        // SAFETY: status is a valid out-pointer; __WALL also reaps clone children.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
        if r >= 0 {
            return Ok(status);
        }
        let e = Errno::last();
        if e != Errno::EINTR {
            return Err(e);
        }
    }
}

/// Describes a wait status: `exit N` or `signal N`.
pub fn describe_status(status: libc::c_int) -> String {
    if libc::WIFEXITED(status) {
        format!("exit {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("signal {}", libc::WTERMSIG(status))
    } else {
        format!("wait status {status:#x}")
    }
}

/// A scratch location writable by the probe: a fresh directory or file name under /tmp,
/// or under / when /tmp is missing or read-only. The name carries the pid and the time, so
/// that runs never collide (the pid alone is 1 in every container), not even with what an
/// earlier run could not remove.
pub fn scratch_name(what: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let name = format!(".probe-{what}-{}-{nanos:x}", std::process::id());
    let tmp = Path::new("/tmp");
    // SAFETY: the path literal is NUL-terminated; access only reads it.
    let tmp_ok = tmp.is_dir() && unsafe { libc::access(c"/tmp".as_ptr(), libc::W_OK) } == 0;
    if tmp_ok {
        tmp.join(name)
    } else {
        Path::new("/").join(name)
    }
}

/// Creates a scratch directory and returns its path.
pub fn scratch_dir(what: &str) -> Result<PathBuf, String> {
    let p = scratch_name(what);
    let c = cpath(&p)?;
    // SAFETY: c is NUL-terminated.
    reti(unsafe { libc::mkdir(c.as_ptr(), 0o700) })
        .map_err(|e| format!("cannot create {}: {}", p.display(), en(e)))?;
    Ok(p)
}

/// Reads a small text file; `None` when it cannot be read.
pub fn read_text(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// Closes every fd-like resource quietly; used for descriptors from raw syscalls.
pub fn close_raw(fd: libc::c_long) {
    drop(own(fd));
}
