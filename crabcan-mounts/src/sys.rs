//! Thin wrappers over the mount syscalls that `nix` does not cover (`open_tree`,
//! `move_mount`, `mount_setattr`) and fd-relative path helpers.

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use libc::{MOVE_MOUNT_F_EMPTY_PATH, MOVE_MOUNT_T_EMPTY_PATH, OPEN_TREE_CLONE};
/// `MOUNT_ATTR_RDONLY`.
pub const ATTR_RDONLY: u64 = libc::MOUNT_ATTR_RDONLY;
/// `MOUNT_ATTR_NODEV`: device nodes on the mount do not open.
pub const ATTR_NODEV: u64 = libc::MOUNT_ATTR_NODEV;
/// `MOUNT_ATTR_IDMAP`: ids are translated through a user namespace's map.
pub const ATTR_IDMAP: u64 = libc::MOUNT_ATTR_IDMAP;

fn cpath(p: &Path) -> Result<CString, Errno> {
    CString::new(p.as_os_str().as_encoded_bytes()).map_err(|_| Errno::EINVAL)
}

/// A readable directory descriptor for the directory an `O_PATH` descriptor names.
pub fn reopen_dir(fd: BorrowedFd<'_>) -> Result<OwnedFd, Errno> {
    nix::fcntl::open(
        fd_path(fd).as_str(),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// Clones the mount (tree) at `path` into a new detached mount; its fd is returned.
pub fn open_tree(path: &Path, recursive: bool, follow: bool) -> Result<OwnedFd, Errno> {
    let c = cpath(path)?;
    let mut flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    if !follow {
        flags |= libc::AT_SYMLINK_NOFOLLOW as libc::c_uint;
    }
    // SAFETY: plain syscall with a valid C string; the result is a new fd we own.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, c.as_ptr(), flags) };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: the kernel just returned this fd to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Clones the mount tree whose root `fd` is (an `O_PATH` fd of a mount's root).
pub fn open_tree_fd(fd: BorrowedFd<'_>, recursive: bool) -> Result<OwnedFd, Errno> {
    let mut flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint;
    flags |= libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: empty path with AT_EMPTY_PATH on a valid fd.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, fd.as_raw_fd(), c"".as_ptr(), flags) };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: the kernel just returned this fd to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Sets attributes (`ATTR_*`) on the mount `fd` refers to, recursively if asked.
pub fn mount_setattr(fd: BorrowedFd<'_>, set: u64, recursive: bool) -> Result<(), Errno> {
    setattr(fd, set, 0, None, recursive)
}

/// Sets the attributes `set` and clears `clear` on the mount `fd` refers to.
pub fn mount_setattr_clear(
    fd: BorrowedFd<'_>,
    set: u64,
    clear: u64,
    recursive: bool,
) -> Result<(), Errno> {
    setattr(fd, set, clear, None, recursive)
}

/// Idmaps the detached mount `fd` through the id map of the user namespace `userns`
/// (recursively if asked), adding the attributes `set` in the same call.
pub fn mount_setattr_idmap(
    fd: BorrowedFd<'_>,
    set: u64,
    userns: BorrowedFd<'_>,
    recursive: bool,
) -> Result<(), Errno> {
    setattr(fd, set | ATTR_IDMAP, 0, Some(userns), recursive)
}

fn setattr(
    fd: BorrowedFd<'_>,
    set: u64,
    clear: u64,
    userns: Option<BorrowedFd<'_>>,
    recursive: bool,
) -> Result<(), Errno> {
    let attr = libc::mount_attr {
        attr_set: set,
        attr_clr: clear,
        propagation: 0,
        userns_fd: userns.map_or(0, |u| u.as_raw_fd() as u64),
    };
    let mut flags = libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: valid fd, empty path, attr points to a live struct of the size we pass.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if r < 0 { Err(Errno::last()) } else { Ok(()) }
}

/// Attaches the detached mount `from` on top of the file or directory `to`.
pub fn move_mount(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> Result<(), Errno> {
    // SAFETY: valid fds and empty paths with the matching EMPTY_PATH flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from.as_raw_fd(),
            c"".as_ptr(),
            to.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    if r < 0 { Err(Errno::last()) } else { Ok(()) }
}

/// Opens `rel` beneath `root` as if `root` were `/`: symlinks (absolute ones included) and
/// `..` are resolved inside it and cannot leave it, so `/var/run -> /run` in an image works
/// and `/evil -> /` points at the container's root, never the host's.
pub fn open_in_root(root: BorrowedFd<'_>, rel: &Path, flags: OFlag) -> Result<OwnedFd, Errno> {
    open_resolved(root, rel, flags, ResolveFlag::RESOLVE_IN_ROOT)
}

/// Opens `rel` beneath `root` refusing every symlink on the way (`ELOOP`): for the mount
/// points of `/proc`, `/sys` and `/dev`, which an image must not redirect at all.
pub fn open_in_root_no_symlinks(
    root: BorrowedFd<'_>,
    rel: &Path,
    flags: OFlag,
) -> Result<OwnedFd, Errno> {
    open_resolved(
        root,
        rel,
        flags,
        ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_SYMLINKS,
    )
}

/// Opens `rel` below the mount whose root `base` is, without leaving that mount or following
/// any symlink: for masked paths, looked up in the fresh `/proc` or `/sys` itself.
pub fn open_on_mount(base: BorrowedFd<'_>, rel: &Path, flags: OFlag) -> Result<OwnedFd, Errno> {
    open_resolved(
        base,
        rel,
        flags,
        ResolveFlag::RESOLVE_BENEATH
            | ResolveFlag::RESOLVE_NO_XDEV
            | ResolveFlag::RESOLVE_NO_SYMLINKS,
    )
}

fn open_resolved(
    root: BorrowedFd<'_>,
    rel: &Path,
    flags: OFlag,
    resolve: ResolveFlag,
) -> Result<OwnedFd, Errno> {
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(resolve | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let rel = rel.strip_prefix("/").unwrap_or(rel);
    if rel.as_os_str().is_empty() {
        return nix::fcntl::openat2(root, ".", how);
    }
    nix::fcntl::openat2(root, rel, how)
}

/// Opens the host path `path` (absolute) once as `O_PATH`, so that this one resolution pins
/// what every later step uses (a path component swapped for a symlink between two lookups
/// could otherwise point a mount elsewhere on the host); with `no_symlinks`, any symlink on
/// the way is refused (`ELOOP`).
pub fn open_pinned(path: &Path, dir: bool, no_symlinks: bool) -> Result<OwnedFd, Errno> {
    let mut flags = OFlag::O_PATH | OFlag::O_CLOEXEC;
    if dir {
        flags |= OFlag::O_DIRECTORY;
    }
    let mut resolve = ResolveFlag::RESOLVE_NO_MAGICLINKS;
    if no_symlinks {
        resolve |= ResolveFlag::RESOLVE_NO_SYMLINKS;
    }
    let how = OpenHow::new().flags(flags).resolve(resolve);
    nix::fcntl::openat2(nix::fcntl::AT_FDCWD, path, how)
}

/// Whether two open files are the same inode (for "this target is the root itself").
pub fn same_inode(a: BorrowedFd<'_>, b: BorrowedFd<'_>) -> Result<bool, Errno> {
    let (x, y) = (nix::sys::stat::fstat(a)?, nix::sys::stat::fstat(b)?);
    Ok(x.st_dev == y.st_dev && x.st_ino == y.st_ino)
}

/// What kind of mount point to create when one is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointKind {
    /// A directory.
    Dir,
    /// An empty regular file (for binding a file).
    File,
}

/// Opens `rel` beneath `root` (as `O_PATH`; a file it creates, as the write-only descriptor
/// that created it), creating it and its missing parent directories.
/// A symlink on the way whose target is missing gets its target created, inside the root
/// (as the lookup itself resolves it). Each thing created is passed to `created` (its path
/// relative to `root`, and its kind); `may_create` is asked before each thing is made, with
/// the directory it goes in and its path (its error is returned, and nothing is made), so
/// that a caller can record what it is about to make before it exists.
pub fn ensure_in_root(
    root: BorrowedFd<'_>,
    rel: &Path,
    kind: PointKind,
    mode: u32,
    created: &mut dyn FnMut(&Path, PointKind),
    may_create: &mut dyn FnMut(BorrowedFd<'_>, &Path) -> Result<(), Errno>,
) -> Result<OwnedFd, Errno> {
    ensure_depth(root, rel, kind, mode, created, may_create, 0)
}

/// The id of the mount `fd` is on (statx's `STATX_MNT_ID`, as /proc/self/mountinfo
/// numbers mounts).
pub fn mount_id(fd: BorrowedFd<'_>) -> Result<u64, Errno> {
    // SAFETY: an all-zero statx is a valid value of this plain C struct.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: statx writes one struct statx into `stx`, which outlives the call; the path
    // is an empty C string with AT_EMPTY_PATH, so `fd` itself is inspected.
    let r = unsafe {
        libc::syscall(
            libc::SYS_statx,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_STATX_DONT_SYNC,
            libc::STATX_MNT_ID,
            &raw mut stx,
        )
    };
    if r < 0 {
        return Err(Errno::last());
    }
    if stx.stx_mask & libc::STATX_MNT_ID == 0 {
        return Err(Errno::ENOSYS);
    }
    Ok(stx.stx_mnt_id)
}

/// Symlinks followed while creating one path, as the kernel's own limit.
const MAX_LINKS: usize = 40;

fn ensure_depth(
    root: BorrowedFd<'_>,
    rel: &Path,
    kind: PointKind,
    mode: u32,
    created: &mut dyn FnMut(&Path, PointKind),
    may_create: &mut dyn FnMut(BorrowedFd<'_>, &Path) -> Result<(), Errno>,
    depth: usize,
) -> Result<OwnedFd, Errno> {
    if depth > MAX_LINKS {
        return Err(Errno::ELOOP);
    }
    match open_in_root(root, rel, OFlag::O_PATH) {
        Ok(fd) => return Ok(fd),
        Err(Errno::ENOENT) => {}
        Err(e) => return Err(e),
    }
    let parent = rel.parent().unwrap_or(Path::new("/"));
    let name = rel.file_name().ok_or(Errno::EINVAL)?;
    // The parent as its own lookup resolved it: a parent that is no directory fails the
    // creation below with ENOTDIR, as an O_DIRECTORY open of it would.
    let pfd = if parent != Path::new("/") && !parent.as_os_str().is_empty() {
        ensure_depth(
            root,
            parent,
            PointKind::Dir,
            0o755,
            created,
            may_create,
            depth + 1,
        )?
    } else {
        open_in_root(root, Path::new("/"), OFlag::O_PATH | OFlag::O_DIRECTORY)?
    };
    // What is created here is taken by its one name in the parent, without following a
    // symlink: the thing itself, not a second lookup from the root.
    may_create(pfd.as_fd(), rel)?;
    let made = make_in(pfd.as_fd(), name, kind, mode);
    match made {
        Ok(fd) => {
            created(rel, kind);
            return Ok(fd);
        }
        Err(Errno::EEXIST) => {
            // The lookup failed but the name exists: a symlink to something missing.
            if let Ok(target) = nix::fcntl::readlinkat(pfd.as_fd(), name) {
                let base = path_in_root(root, pfd.as_fd())?;
                let next = in_root_join(&base, Path::new(&target));
                return ensure_depth(root, &next, kind, mode, created, may_create, depth + 1);
            }
        }
        Err(e) => return Err(e),
    }
    open_in_root(root, rel, OFlag::O_PATH)
}

/// Makes `name` in the directory `dir` as `kind` with `mode`, failing with `EEXIST` when
/// something (a symlink included) is there, and returns it, taken by its one name.
pub(crate) fn make_in(
    dir: BorrowedFd<'_>,
    name: &std::ffi::OsStr,
    kind: PointKind,
    mode: u32,
) -> Result<OwnedFd, Errno> {
    match kind {
        PointKind::Dir => nix::sys::stat::mkdirat(dir, name, Mode::from_bits_truncate(mode))
            .and_then(|()| {
                nix::fcntl::openat(
                    dir,
                    name,
                    OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
            }),
        PointKind::File => nix::fcntl::openat(
            dir,
            name,
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
            Mode::from_bits_truncate(mode),
        ),
    }
}

/// The entry `name` of `dir` (a directory of the root, resolved in it), made as `kind`
/// with `mode` when missing: what [`ensure_in_root`] gives for `dir/name`, without walking
/// the path from the root again. `None` when `name` is a symlink, whose target only a
/// lookup from the root may follow: the caller does that instead.
pub fn ensure_in_dir(
    dir: BorrowedFd<'_>,
    name: &std::ffi::OsStr,
    kind: PointKind,
    mode: u32,
    may_create: &dyn Fn(BorrowedFd<'_>) -> Result<(), Errno>,
) -> Result<Option<OwnedFd>, Errno> {
    match nix::fcntl::openat(
        dir,
        name,
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => {
            let st = nix::sys::stat::fstat(fd.as_fd())?;
            let is_link = st.st_mode & libc::S_IFMT == libc::S_IFLNK;
            return Ok((!is_link).then_some(fd));
        }
        Err(Errno::ENOENT) => {}
        Err(e) => return Err(e),
    }
    may_create(dir)?;
    match make_in(dir, name, kind, mode) {
        Ok(fd) => Ok(Some(fd)),
        // Made by someone else since the lookup: taken from the root, as any symlink.
        Err(Errno::EEXIST) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Where the open directory `fd` is, as a path inside `root` (both as the kernel names
/// them in this mount namespace); `ENOENT` when it is not below `root`.
fn path_in_root(root: BorrowedFd<'_>, fd: BorrowedFd<'_>) -> Result<PathBuf, Errno> {
    let r = nix::fcntl::readlink(fd_path(root).as_str())?;
    let d = nix::fcntl::readlink(fd_path(fd).as_str())?;
    let rel = Path::new(&d)
        .strip_prefix(Path::new(&r))
        .map_err(|_| Errno::ENOENT)?;
    Ok(Path::new("/").join(rel))
}

/// `target` (a symlink's text) taken from the directory `base` (a resolved path inside the
/// root), with `.` and `..` applied and `..` stopping at the root, as in-root lookups do.
pub fn in_root_join(base: &Path, target: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    let start = if target.is_absolute() {
        Path::new("/")
    } else {
        base
    };
    for c in start.components().chain(target.components()) {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// The path of an open fd as the kernel sees it (`/proc/self/fd/N`).
pub fn fd_path(fd: BorrowedFd<'_>) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An entry of a directory already resolved is what a lookup from the root gives:
    /// made when missing (a file or a directory, with its mode), the thing itself when
    /// there, and no answer for a symlink (dangling or not), which only a lookup from the
    /// root may follow; a name under a file fails.
    #[test]
    fn an_entry_of_a_resolved_directory_is_made_or_taken_never_followed() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = std::env::temp_dir().join(format!("crabcan-in-dir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("there"), "").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.join("link")).unwrap();
        std::os::unix::fs::symlink("/no/such", dir.join("dangling")).unwrap();
        let d = open_pinned(&dir, true, false).unwrap();
        let name = std::ffi::OsStr::new;
        let old = nix::sys::stat::umask(Mode::empty());
        let made =
            ensure_in_dir(d.as_fd(), name("null"), PointKind::File, 0o644, &|_| Ok(())).unwrap();
        let sub =
            ensure_in_dir(d.as_fd(), name("pts"), PointKind::Dir, 0o755, &|_| Ok(())).unwrap();
        nix::sys::stat::umask(old);
        let meta = std::fs::metadata(dir.join("null")).unwrap();
        assert!(meta.is_file());
        assert_eq!(meta.permissions().mode() & 0o777, 0o644);
        assert_eq!(
            nix::sys::stat::fstat(made.unwrap()).unwrap().st_ino,
            meta.ino()
        );
        let meta = std::fs::metadata(dir.join("pts")).unwrap();
        assert!(meta.is_dir());
        assert_eq!(
            nix::sys::stat::fstat(sub.unwrap()).unwrap().st_ino,
            meta.ino()
        );
        let there = ensure_in_dir(
            d.as_fd(),
            name("there"),
            PointKind::File,
            0o644,
            &|_| Ok(()),
        )
        .unwrap();
        assert_eq!(
            nix::sys::stat::fstat(there.unwrap()).unwrap().st_ino,
            std::fs::metadata(dir.join("there")).unwrap().ino()
        );
        for link in ["link", "dangling"] {
            let got =
                ensure_in_dir(d.as_fd(), name(link), PointKind::File, 0o644, &|_| Ok(())).unwrap();
            assert!(got.is_none(), "{link} was followed");
        }
        assert!(!Path::new("/no/such").exists());
        let file = nix::fcntl::open(&dir.join("there"), OFlag::O_PATH, Mode::empty()).unwrap();
        let under_file =
            ensure_in_dir(file.as_fd(), name("x"), PointKind::File, 0o644, &|_| Ok(()));
        assert_eq!(under_file.err(), Some(Errno::ENOTDIR));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A point made in a directory is a fresh one or nothing: whatever is there already,
    /// a symlink (dangling or not) included, fails with EEXIST and is left as it was.
    #[test]
    fn a_point_is_made_fresh_or_not_at_all() {
        let dir = std::env::temp_dir().join(format!("crabcan-make-in-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("there"), "kept").unwrap();
        std::os::unix::fs::symlink("/no/such", dir.join("dangling")).unwrap();
        let d = open_pinned(&dir, true, false).unwrap();
        let name = std::ffi::OsStr::new;
        let made = make_in(d.as_fd(), name("null"), PointKind::File, 0o600).unwrap();
        let st = nix::sys::stat::fstat(made.as_fd()).unwrap();
        assert_eq!(st.st_mode & libc::S_IFMT, libc::S_IFREG);
        assert_eq!(st.st_size, 0);
        for there in ["there", "dangling", "null"] {
            let e = make_in(d.as_fd(), name(there), PointKind::File, 0o600).err();
            assert_eq!(e, Some(Errno::EEXIST), "{there}");
        }
        assert_eq!(std::fs::read_to_string(dir.join("there")).unwrap(), "kept");
        assert!(!Path::new("/no/such").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Mount points are made inside the root whatever the image holds: missing parents
    /// too, a dangling symlink's target (an absolute one taken from the root, not the
    /// host), each reported once; what comes back is the very thing made; a parent that is
    /// a file fails with ENOTDIR and makes nothing.
    #[test]
    fn mount_points_are_made_inside_the_root() {
        use std::os::unix::fs::MetadataExt;
        let dir = std::env::temp_dir().join(format!("crabcan-ensure-{}", std::process::id()));
        let outside =
            std::env::temp_dir().join(format!("crabcan-ensure-out-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        std::fs::write(dir.join("afile"), "").unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("etc/away")).unwrap();
        let root = open_pinned(&dir, true, false).unwrap();
        let mut made = Vec::new();
        let mut note = |p: &Path, k: PointKind| made.push((p.to_path_buf(), k));
        let fd = ensure_in_root(
            root.as_fd(),
            Path::new("/a/b/c"),
            PointKind::File,
            0o644,
            &mut note,
            &mut |_, _| Ok(()),
        )
        .unwrap();
        let ino = nix::sys::stat::fstat(&fd).unwrap().st_ino;
        assert_eq!(ino, std::fs::metadata(dir.join("a/b/c")).unwrap().ino());
        let fd = ensure_in_root(
            root.as_fd(),
            Path::new("/etc/away/d"),
            PointKind::Dir,
            0o755,
            &mut note,
            &mut |_, _| Ok(()),
        )
        .unwrap();
        let inside = dir.join(outside.strip_prefix("/").unwrap()).join("d");
        assert!(
            inside.is_dir(),
            "the symlink's target is made inside the root"
        );
        assert!(!outside.exists(), "nothing is made on the host");
        assert_eq!(
            nix::sys::stat::fstat(&fd).unwrap().st_ino,
            std::fs::metadata(&inside).unwrap().ino()
        );
        let e = ensure_in_root(
            root.as_fd(),
            Path::new("/afile/x"),
            PointKind::File,
            0o644,
            &mut note,
            &mut |_, _| Ok(()),
        )
        .unwrap_err();
        assert_eq!(e, Errno::ENOTDIR);
        let kinds: Vec<PointKind> = made.iter().map(|(_, k)| *k).collect();
        assert_eq!(made[0].0, Path::new("/a"));
        assert_eq!(made[2].0, Path::new("/a/b/c"));
        assert_eq!(
            kinds[..3],
            [PointKind::Dir, PointKind::Dir, PointKind::File]
        );
        assert_eq!(made.last().unwrap().1, PointKind::Dir);
        assert!(!dir.join("afile").is_dir());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn symlink_targets_stay_in_the_root() {
        let j = |b: &str, t: &str| in_root_join(Path::new(b), Path::new(t));
        assert_eq!(j("/etc", "../run/x"), Path::new("/run/x"));
        assert_eq!(j("/etc", "/run/x"), Path::new("/run/x"));
        assert_eq!(j("/a/b", "../../../../../host"), Path::new("/host"));
        assert_eq!(j("/", "./a/./b"), Path::new("/a/b"));
        assert_eq!(j("/a", ".."), Path::new("/"));
    }
}
