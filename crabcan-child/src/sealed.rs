//! crabcan runs from an image of its own binary that nothing can write, so that no process
//! in a container can ever reach the host's crabcan executable for writing.
//!
//! The attack this closes (the CVE-2019-5736 class): until a container's process execs
//! its command it runs crabcan's image, so `/proc/self/exe` names crabcan's binary; an
//! image whose entry point is `#!/proc/self/exe` makes the kernel execute that binary
//! inside the container (with the image's dynamic loader), and the attacker's code then
//! holds a path to the host binary and can rewrite it once crabcan exits.
//!
//! Two ways to take that path away (the caller picks by [`ImageUse`]):
//! - **A read-only view** (needs the privilege to mount, so root callers such as the
//!   engines): the binary re-executed through a detached overlay mount whose only layers
//!   are the binary's directory and an empty tmpfs. An overlay with no upper layer cannot
//!   be written at all (EROFS), the mount is read-only as well, and being detached it is
//!   in no mount table: nobody can remount it, and it goes with the last process that
//!   holds it. It costs a few mount syscalls and no copy; the exec reads pages the host
//!   already has cached. Those pages are the file's own, so a rewrite of the file in place
//!   would pull them from under a process that still runs from the view: it serves only
//!   crabcan processes that end once the container's command runs.
//! - **A sealed memfd copy** for the rest (crabcan processes that live as long as the
//!   container, callers that may not mount): `/proc/self/exe` is a private, write-sealed
//!   copy, never the file on the host. It costs one `sendfile` of the binary and a cold
//!   exec of the copy (1–2 ms for the static release build here).
//!
//! Both are skipped when no id the container maps could write the binary anyway
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

/// Whether `fd` is one of the two protected images: a sealed memfd, or a file on a
/// detached read-only overlay (what [`readonly_view`] makes). An overlay attached
/// anywhere is not trusted even read-only: whoever can mount could make it (or a
/// read-only bind of a writable overlay) writable again once crabcan is gone.
fn is_protected(fd: &OwnedFd) -> bool {
    is_sealed(fd) || is_detached_readonly_overlay(fd)
}

fn is_detached_readonly_overlay(fd: &OwnedFd) -> bool {
    let on_overlay = nix::sys::statfs::fstatfs(fd)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::OVERLAYFS_SUPER_MAGIC);
    on_overlay
        && nix::sys::statvfs::fstatvfs(fd)
            .is_ok_and(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
        && !in_my_namespace(fd)
}

/// `statmount(2)`'s number (Linux 6.8; the same on every architecture's new table).
const SYS_STATMOUNT: libc::c_long = 457;

/// statx's STATX_MNT_ID_UNIQUE (Linux 6.8): the 64-bit mount id statmount takes.
const STATX_MNT_ID_UNIQUE: u32 = 0x4000;

/// Whether the mount `fd` lives on belongs to this process's mount namespace. `statmount`
/// looks it up there by its unique id (ENOENT: not there, as a detached mount is not); a
/// kernel without it is asked through /proc/self/mountinfo, a table that grows with every
/// container on the host. Any other answer counts as "there" (not detached: not trusted).
fn in_my_namespace(fd: &OwnedFd) -> bool {
    if let Some(unique) = statx_mount_id(fd, STATX_MNT_ID_UNIQUE) {
        match statmount_basic(unique) {
            Ok(()) => return true,
            Err(Errno::ENOENT) => return false,
            Err(_) => {}
        }
    }
    mount_id(fd).is_none_or(|id| {
        std::fs::read_to_string("/proc/self/mountinfo").map_or(true, |m| is_listed(&m, id))
    })
}

/// `statmount(2)` of the mount with unique id `id`, asking for the least it can answer.
fn statmount_basic(id: u64) -> std::result::Result<(), Errno> {
    /// `struct mnt_id_req`, its first version.
    #[repr(C)]
    struct MntIdReq {
        size: u32,
        spare: u32,
        mnt_id: u64,
        param: u64,
    }
    /// STATMOUNT_SB_BASIC.
    const SB_BASIC: u64 = 1;
    let req = MntIdReq {
        size: std::mem::size_of::<MntIdReq>() as u32,
        spare: 0,
        mnt_id: id,
        param: SB_BASIC,
    };
    // Room for `struct statmount` (520 bytes today) and what later kernels add.
    let mut buf = [0u64; 512];
    // SAFETY: statmount reads the request and writes at most `size_of_val(&buf)` bytes into
    // the buffer; both live across the call.
    let r = unsafe {
        libc::syscall(
            SYS_STATMOUNT,
            &req as *const MntIdReq,
            buf.as_mut_ptr(),
            std::mem::size_of_val(&buf),
            0,
        )
    };
    if r == 0 { Ok(()) } else { Err(Errno::last()) }
}

/// The id of the mount `fd` lives on (statx, Linux 5.8).
fn mount_id(fd: &OwnedFd) -> Option<u64> {
    statx_mount_id(fd, libc::STATX_MNT_ID)
}

/// The mount id statx gives for `mask` (STATX_MNT_ID or STATX_MNT_ID_UNIQUE), if it does.
fn statx_mount_id(fd: &OwnedFd, mask: u32) -> Option<u64> {
    // SAFETY: statx is plain data; all zeros is a valid value.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: statx of the fd itself (empty path) into a live buffer.
    let r = unsafe {
        libc::statx(
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            mask,
            &mut st,
        )
    };
    (r == 0 && st.stx_mask & mask != 0).then_some(st.stx_mnt_id)
}

/// Whether a mount with `id` is in a mountinfo table (its first field).
fn is_listed(mountinfo: &str, id: u64) -> bool {
    mountinfo
        .lines()
        .any(|l| l.split(' ').next().and_then(|f| f.parse::<u64>().ok()) == Some(id))
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
    if is_protected(&exe) {
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

/// How long crabcan's own processes run from the re-executed image, which decides how the
/// image is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageUse {
    /// Until the container's process execs its command, and crabcan returns (`create`, a
    /// detached `exec` or `run`): the read-only view, where the caller may mount. It
    /// shares the binary's pages, so a rewrite of the file in place (not a replacement by
    /// rename) would kill a process still running from it.
    UntilStart,
    /// As long as the container or its command runs (a foreground `run` or `exec`,
    /// `crabcan run` and its init): the sealed copy, which nothing done to the file on
    /// the host can touch.
    WhileItRuns,
}

/// Re-executes crabcan from a protected image of its binary (see [`ImageUse`]) unless it
/// runs from one already; returns only in the protected image (or with an error). Call it
/// first thing in `main`, while single-threaded; `args` and `env` are passed on unchanged.
pub fn reexec_sealed(
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    usage: ImageUse,
) -> Result<()> {
    let Some(image) = protected_image(usage)? else {
        return Ok(());
    };
    let is_copy = image.is_copy;
    let copy = image.fd;
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
    let err = Errcode::sys(
        if is_copy {
            "run crabcan from its sealed in-memory copy (execveat)"
        } else {
            "run crabcan through its read-only view (execveat)"
        },
        e,
    );
    Err(match e {
        Errno::EACCES | Errno::EPERM if is_copy => {
            err.with_hint("the sysctl vm.memfd_noexec may forbid executable memfds; set it to 0")
        }
        _ => err,
    })
}

/// A protected image of crabcan's binary, ready to be executed.
#[derive(Debug)]
pub struct ProtectedImage {
    /// The executable: a file of the read-only view, or the sealed copy.
    pub fd: OwnedFd,
    /// The sealed in-memory copy (not the view).
    pub is_copy: bool,
}

impl ProtectedImage {
    /// A path that names the image for `execve` while this process holds it (the kernel
    /// resolves it before a close-on-exec descriptor goes).
    pub fn path(&self) -> String {
        format!("/proc/self/fd/{}", self.fd.as_raw_fd())
    }
}

/// A protected image of crabcan's binary for `usage` (see [`ImageUse`]), or `None` when
/// this process runs from one already.
pub fn protected_image(usage: ImageUse) -> Result<Option<ProtectedImage>> {
    let exe = open_self_exe()?;
    if is_protected(&exe) {
        return Ok(None);
    }
    let view = match usage {
        ImageUse::UntilStart => readonly_view(&exe)
            .inspect_err(|e| log::debug!("no read-only view of crabcan's binary ({e}); copying it"))
            .ok(),
        ImageUse::WhileItRuns => None,
    };
    let is_copy = view.is_none();
    let fd = match view {
        Some(v) => v,
        None => sealed_copy(&exe)?,
    };
    Ok(Some(ProtectedImage { fd, is_copy }))
}

/// A new mount context's fd (`fsopen`).
fn fs_open(fstype: &std::ffi::CStr) -> std::result::Result<OwnedFd, Errno> {
    // SAFETY: fsopen with a NUL-terminated name; the result is a new fd we own.
    let fd = unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), libc::FSOPEN_CLOEXEC) };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: the kernel just returned this fd to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `fsconfig` with a string value (`Some`) or the create command (`None`).
fn fs_config(
    ctx: &OwnedFd,
    key_value: Option<(&std::ffi::CStr, &std::ffi::CStr)>,
) -> std::result::Result<(), Errno> {
    let (cmd, key, value) = match key_value {
        Some((k, v)) => (libc::FSCONFIG_SET_STRING, k.as_ptr(), v.as_ptr()),
        None => (
            libc::FSCONFIG_CMD_CREATE,
            std::ptr::null(),
            std::ptr::null(),
        ),
    };
    // SAFETY: fsconfig on a mount context we own, with NUL-terminated strings or nulls
    // as the command requires.
    let r = unsafe { libc::syscall(libc::SYS_fsconfig, ctx.as_raw_fd(), cmd, key, value, 0) };
    if r < 0 { Err(Errno::last()) } else { Ok(()) }
}

/// The created superblock of `ctx` as a detached mount (`fsmount`) with `attrs`.
fn fs_mount(ctx: &OwnedFd, attrs: u64) -> std::result::Result<OwnedFd, Errno> {
    // SAFETY: fsmount on a mount context we own whose superblock was created; the result
    // is a new fd we own.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            ctx.as_raw_fd(),
            libc::FSMOUNT_CLOEXEC,
            attrs,
        )
    };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: the kernel just returned this fd to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `exe` as seen through a detached, read-only overlay of its directory over an empty
/// tmpfs (an overlay with no upper layer needs two lower ones). Errors mean "not
/// available here" (no privilege to mount, no overlayfs, the binary replaced meanwhile);
/// the caller falls back to the memfd copy.
fn readonly_view(exe: &OwnedFd) -> std::result::Result<OwnedFd, Errno> {
    use nix::fcntl::OFlag;
    use std::os::unix::ffi::OsStrExt;
    let path = std::fs::read_link("/proc/self/exe").map_err(|_| Errno::ENOENT)?;
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(Errno::EINVAL);
    };
    if !path.is_absolute() || path.as_os_str().as_bytes().ends_with(b" (deleted)") {
        return Err(Errno::EINVAL);
    }
    // The directory is held, and the name in it must be the very file this process runs;
    // overlayfs is given the held directory, never a path it would parse or look up again.
    let dirfd = nix::fcntl::open(
        dir,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    let running = nix::sys::stat::fstat(exe)?;
    let named = nix::sys::stat::fstatat(&dirfd, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)?;
    if (running.st_dev, running.st_ino) != (named.st_dev, named.st_ino) {
        return Err(Errno::ESTALE);
    }
    let ro = libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NODEV | libc::MOUNT_ATTR_NOSUID;
    let empty_ctx = fs_open(c"tmpfs")?;
    fs_config(&empty_ctx, None)?;
    let empty = fs_mount(&empty_ctx, ro)?;
    let lower = CString::new(format!(
        "/proc/self/fd/{}:/proc/self/fd/{}",
        dirfd.as_raw_fd(),
        empty.as_raw_fd()
    ))
    .map_err(|_| Errno::EINVAL)?;
    let ctx = fs_open(c"overlay")?;
    fs_config(&ctx, Some((c"lowerdir", &lower)))?;
    // Inode numbers as the underlying file has them (the check below compares them); a
    // kernel without the option keeps its default and the check decides.
    let _ = fs_config(&ctx, Some((c"xino", c"off")));
    fs_config(&ctx, None)?;
    let mnt = fs_mount(&ctx, ro)?;
    let view = nix::fcntl::openat(
        &mnt,
        name,
        OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
        nix::sys::stat::Mode::empty(),
    )?;
    // The name was looked up again, through the overlay: still the same file? And the
    // re-executed process must recognise the view as protected by the same test (a kernel
    // without statx's mount id would not), or it would re-execute again and again.
    let seen = nix::sys::stat::fstat(&view)?;
    if (running.st_ino, running.st_size) != (seen.st_ino, seen.st_size)
        || !is_detached_readonly_overlay(&view)
    {
        return Err(Errno::ESTALE);
    }
    Ok(view)
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

    /// Whether this kernel has overlayfs (asking loads the module where it can be loaded,
    /// as crabcan's own request would). Without it the view cannot be made and crabcan
    /// copies: the tests then check that instead.
    fn has_overlayfs() -> bool {
        fs_open(c"overlay").is_ok()
    }

    /// One test at a time changes the mount table or compares it.
    static MOUNTING: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// Needs root (the mount API). The view is the running binary, refuses writes through
    /// a reopen as `/proc/PID/exe` would, and leaves no mount in the table.
    #[test]
    fn a_readonly_view_is_the_same_file_and_refuses_writes() {
        let _one = MOUNTING.lock().unwrap_or_else(|e| e.into_inner());
        let mounts = || std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let before = mounts();
        let exe = open_self_exe().unwrap();
        assert!(!is_protected(&exe), "the test binary is a plain file");
        if !has_overlayfs() {
            assert!(readonly_view(&exe).is_err());
            assert_eq!(mounts(), before, "a failed view left a mount behind");
            return;
        }
        let view = readonly_view(&exe).expect("a read-only view (run the tests as root)");
        assert!(is_protected(&view));
        assert!(!is_sealed(&view));
        let bytes =
            |fd: &OwnedFd| std::fs::read(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
        assert!(bytes(&view) == bytes(&exe), "the view shows other bytes");
        let path = format!("/proc/self/fd/{}", view.as_raw_fd());
        let w = std::fs::OpenOptions::new().write(true).open(&path);
        assert_eq!(w.unwrap_err().raw_os_error(), Some(libc::EROFS));
        drop(view);
        assert_eq!(mounts(), before, "the view left a mount behind");
    }

    /// Needs root (the mount API). The root's mount is in this namespace; a new detached
    /// mount is not (the test a view's trust rests on).
    #[test]
    fn a_detached_mount_is_not_in_the_namespace_and_the_root_is() {
        let root = nix::fcntl::open(
            "/",
            nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .unwrap();
        assert!(in_my_namespace(&root));
        let ctx = fs_open(c"tmpfs").expect("fsopen (run the tests as root)");
        fs_config(&ctx, None).unwrap();
        let detached = fs_mount(&ctx, libc::MOUNT_ATTR_RDONLY).unwrap();
        assert!(!in_my_namespace(&detached));
        // And the kernel's own table agrees (the fallback's source).
        let id = mount_id(&detached).unwrap();
        assert!(!is_listed(
            &std::fs::read_to_string("/proc/self/mountinfo").unwrap(),
            id
        ));
    }

    #[test]
    fn a_mount_is_found_in_mountinfo_by_its_first_field() {
        let info = "22 1 0:21 / /sys rw - sysfs sysfs rw\n233 22 0:7 / /sys/x rw - x x rw\n";
        assert!(is_listed(info, 22));
        assert!(is_listed(info, 233));
        assert!(!is_listed(info, 1));
        assert!(!is_listed(info, 23));
        assert!(!is_listed("", 22));
    }

    /// Needs root. The same read-only overlay, once attached to the mount table, is no
    /// longer taken as protected: an attached mount (or a writable one under a read-only
    /// bind) can be made writable again by whoever may mount.
    #[test]
    fn a_readonly_overlay_attached_anywhere_is_not_trusted() {
        let _one = MOUNTING.lock().unwrap_or_else(|e| e.into_inner());
        if !has_overlayfs() {
            return; // Nothing to trust or not: the view needs overlayfs (tested above).
        }
        let exe = open_self_exe().unwrap();
        let view = readonly_view(&exe).expect("a read-only view (run the tests as root)");
        // The same kind of overlay as the view's, but attached below.
        let path = std::fs::read_link("/proc/self/exe").unwrap();
        let name = path.file_name().unwrap();
        let dir = nix::fcntl::open(
            path.parent().unwrap(),
            nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .unwrap();
        let empty_ctx = fs_open(c"tmpfs").unwrap();
        fs_config(&empty_ctx, None).unwrap();
        let empty = fs_mount(&empty_ctx, libc::MOUNT_ATTR_RDONLY).unwrap();
        let lower = CString::new(format!(
            "/proc/self/fd/{}:/proc/self/fd/{}",
            dir.as_raw_fd(),
            empty.as_raw_fd()
        ))
        .unwrap();
        let ctx = fs_open(c"overlay").unwrap();
        fs_config(&ctx, Some((c"lowerdir", &lower))).unwrap();
        fs_config(&ctx, None).unwrap();
        let tree = fs_mount(&ctx, libc::MOUNT_ATTR_RDONLY).unwrap();
        let at =
            std::env::temp_dir().join(format!("crabcan-sealed-attached-{}", std::process::id()));
        std::fs::create_dir_all(&at).unwrap();
        struct Attached(std::path::PathBuf);
        impl Drop for Attached {
            fn drop(&mut self) {
                let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
                let _ = std::fs::remove_dir(&self.0);
            }
        }
        let attached = Attached(at.clone());
        let target = CString::new(at.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: move_mount of a detached tree we own onto a directory we made.
        let r = unsafe {
            libc::syscall(
                libc::SYS_move_mount,
                tree.as_raw_fd(),
                c"".as_ptr(),
                libc::AT_FDCWD,
                target.as_ptr(),
                libc::MOVE_MOUNT_F_EMPTY_PATH,
            )
        };
        assert_eq!(r, 0, "move_mount: {}", Errno::last());
        let through = std::fs::File::open(at.join(name)).unwrap();
        let through = OwnedFd::from(through);
        assert!(is_protected(&view), "the detached view itself is protected");
        assert!(
            !is_protected(&through),
            "an attached read-only overlay was taken as protected"
        );
        drop(attached);
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
