//! `tmpcopyup`: the contents a directory of the image had, copied into the fresh tmpfs
//! mounted over it (podman asks for it on `/run`, `/tmp` and friends of a read-only root).
//!
//! Everything is relative to directory descriptors and nothing is ever followed: the image
//! is hostile, so a symlink in it is copied as a symlink, never through.

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat, readlinkat};
use nix::sys::stat::{FchmodatFlags, Mode, SFlag, fchmodat, fstat, fstatat, mkdirat, mknodat};
use nix::unistd::{Gid, Uid, fchownat};
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

/// How deep a tree is followed; deeper is refused rather than risking the stack.
const MAX_DEPTH: usize = 256;

/// A failure: the path (relative to the copied directory) and the errno.
pub type CopyError = (PathBuf, Errno);

/// Copies the contents of directory `from` into directory `to` — files with their
/// bytes, directories, symlinks and fifos, each with its mode and owner — and gives `to`
/// the mode and owner of `from` unless `keep_root_mode`. Sockets are skipped (nothing
/// listens on them in a fresh copy), and so are device nodes: made again on a tmpfs
/// mounted without `nodev` they would open, where the image's own never do (its root is
/// `nodev`); a container's devices come from its configuration.
pub fn copy_tree(
    from: BorrowedFd<'_>,
    to: BorrowedFd<'_>,
    keep_root_mode: bool,
) -> Result<(), CopyError> {
    let root = PathBuf::new();
    if !keep_root_mode {
        let st = fstat(from).map_err(|e| (root.clone(), e))?;
        owner_and_mode(to, None, &st).map_err(|e| (root.clone(), e))?;
    }
    copy_dir(from, to, &root, 0)
}

fn copy_dir(
    from: BorrowedFd<'_>,
    to: BorrowedFd<'_>,
    at: &Path,
    depth: usize,
) -> Result<(), CopyError> {
    if depth > MAX_DEPTH {
        return Err((at.to_path_buf(), Errno::ELOOP));
    }
    let fail = |name: &OsStr, e: Errno| (at.join(name), e);
    for name in entries(from).map_err(|e| (at.to_path_buf(), e))? {
        let st = fstatat(from, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(|e| fail(&name, e))?;
        let kind = SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT);
        let perm = Mode::from_bits_truncate(st.st_mode & 0o7777);
        match kind {
            SFlag::S_IFDIR => {
                mkdirat(to, name.as_os_str(), Mode::S_IRWXU).map_err(|e| fail(&name, e))?;
                let open = |fd: BorrowedFd<'_>| {
                    openat(
                        fd,
                        name.as_os_str(),
                        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    )
                };
                let src = open(from).map_err(|e| fail(&name, e))?;
                let dst = open(to).map_err(|e| fail(&name, e))?;
                copy_dir(src.as_fd(), dst.as_fd(), &at.join(&name), depth + 1)?;
                // Last, so a directory without write permission could still be filled.
                owner_and_mode(dst.as_fd(), None, &st).map_err(|e| fail(&name, e))?;
            }
            SFlag::S_IFREG => {
                let src = openat(
                    from,
                    name.as_os_str(),
                    OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| fail(&name, e))?;
                let dst = openat(
                    to,
                    name.as_os_str(),
                    OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_CLOEXEC,
                    Mode::S_IRUSR | Mode::S_IWUSR,
                )
                .map_err(|e| fail(&name, e))?;
                copy_bytes(&src, &dst).map_err(|e| fail(&name, e))?;
                owner_and_mode(dst.as_fd(), None, &st).map_err(|e| fail(&name, e))?;
            }
            SFlag::S_IFLNK => {
                let target = readlinkat(from, name.as_os_str()).map_err(|e| fail(&name, e))?;
                nix::unistd::symlinkat(target.as_os_str(), to, name.as_os_str())
                    .map_err(|e| fail(&name, e))?;
                fchownat(
                    to,
                    name.as_os_str(),
                    Some(Uid::from_raw(st.st_uid)),
                    Some(Gid::from_raw(st.st_gid)),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(|e| fail(&name, e))?;
            }
            SFlag::S_IFIFO => {
                mknodat(to, name.as_os_str(), kind, perm, 0).map_err(|e| fail(&name, e))?;
                owner_and_mode(to, Some(&name), &st).map_err(|e| fail(&name, e))?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Gives `dir/name` (or `dir` itself) the owner and permission bits of `st`; the owner
/// first, since a chown clears the set-id bits.
fn owner_and_mode(
    dir: BorrowedFd<'_>,
    name: Option<&OsString>,
    st: &nix::sys::stat::FileStat,
) -> Result<(), Errno> {
    let (uid, gid) = (
        Some(Uid::from_raw(st.st_uid)),
        Some(Gid::from_raw(st.st_gid)),
    );
    let perm = Mode::from_bits_truncate(st.st_mode & 0o7777);
    match name {
        Some(n) => {
            fchownat(dir, n.as_os_str(), uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW)?;
            fchmodat(dir, n.as_os_str(), perm, FchmodatFlags::NoFollowSymlink).or_else(|e| {
                // Older kernels cannot chmod without following; a node is no symlink.
                if e == Errno::EOPNOTSUPP || e == Errno::ENOSYS {
                    fchmodat(dir, n.as_os_str(), perm, FchmodatFlags::FollowSymlink)
                } else {
                    Err(e)
                }
            })
        }
        None => {
            nix::unistd::fchown(dir, uid, gid)?;
            nix::sys::stat::fchmod(dir, perm)
        }
    }
}

/// The names in a directory, without `.` and `..`.
fn entries(dir: BorrowedFd<'_>) -> Result<Vec<OsString>, Errno> {
    // A fresh descriptor: reading moves its position, which the caller's must keep.
    let fd = openat(
        dir,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let mut d = nix::dir::Dir::from_fd(fd)?;
    let mut out = Vec::new();
    for e in d.iter() {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            use std::os::unix::ffi::OsStrExt;
            out.push(OsStr::from_bytes(n).to_os_string());
        }
    }
    Ok(out)
}

fn copy_bytes(src: &OwnedFd, dst: &OwnedFd) -> Result<(), Errno> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match nix::unistd::read(src, &mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        };
        let mut done = 0;
        while done < n {
            match nix::unistd::write(dst, &buf[done..n]) {
                Ok(w) => done += w,
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};

    fn dir_fd(p: &Path) -> OwnedFd {
        nix::fcntl::open(
            p,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .unwrap()
    }

    #[test]
    fn the_tree_is_copied_with_modes_owners_and_symlinks_unfollowed() {
        let base = std::env::temp_dir().join(format!("crabcan-copyup-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let (src, dst) = (base.join("src"), base.join("dst"));
        std::fs::create_dir_all(src.join("sub/deeper")).unwrap();
        std::fs::create_dir_all(&dst).unwrap();
        std::fs::write(src.join("file"), b"hello").unwrap();
        std::fs::set_permissions(src.join("file"), std::fs::Permissions::from_mode(0o640)).unwrap();
        std::fs::write(src.join("sub/deeper/x"), b"deep").unwrap();
        std::fs::set_permissions(src.join("sub"), std::fs::Permissions::from_mode(0o1750)).unwrap();
        // A symlink that leads out of the tree: copied as a link, never read through.
        symlink("/etc/hostname", src.join("out")).unwrap();
        symlink("file", src.join("in")).unwrap();
        nix::unistd::mkfifo(&src.join("fifo"), Mode::from_bits_truncate(0o600)).unwrap();
        // A device node shipped in the image (where it never opens): not made again.
        let root = nix::unistd::geteuid().is_root();
        if root {
            nix::sys::stat::mknod(
                &src.join("sda"),
                SFlag::S_IFBLK,
                Mode::from_bits_truncate(0o666),
                nix::sys::stat::makedev(8, 0),
            )
            .unwrap();
        }
        std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o711)).unwrap();
        let me = nix::unistd::geteuid().as_raw();
        let other = if me == 0 { 4321 } else { me };
        if me == 0 {
            nix::unistd::chown(
                &src.join("file"),
                Some(Uid::from_raw(other)),
                Some(Gid::from_raw(other)),
            )
            .unwrap();
            std::os::unix::fs::lchown(src.join("out"), Some(other), Some(other)).unwrap();
        }

        copy_tree(dir_fd(&src).as_fd(), dir_fd(&dst).as_fd(), false).unwrap();

        assert_eq!(std::fs::read(dst.join("file")).unwrap(), b"hello");
        assert_eq!(std::fs::read(dst.join("sub/deeper/x")).unwrap(), b"deep");
        let m = |p: &str| std::fs::symlink_metadata(dst.join(p)).unwrap();
        assert_eq!(m("file").mode() & 0o7777, 0o640);
        assert_eq!(m("file").uid(), other);
        assert_eq!(m("sub").mode() & 0o7777, 0o1750);
        assert!(m("out").file_type().is_symlink());
        assert_eq!(
            std::fs::read_link(dst.join("out")).unwrap(),
            Path::new("/etc/hostname")
        );
        assert_eq!(m("out").uid(), other);
        assert_eq!(
            std::fs::read_link(dst.join("in")).unwrap(),
            Path::new("file")
        );
        assert!(std::os::unix::fs::FileTypeExt::is_fifo(
            &m("fifo").file_type()
        ));
        assert_eq!(m("fifo").mode() & 0o7777, 0o600);
        if root {
            assert!(
                dst.join("sda").symlink_metadata().is_err(),
                "a device node copied"
            );
        }
        // The root takes the source's mode, unless the mount gave one.
        assert_eq!(std::fs::metadata(&dst).unwrap().mode() & 0o7777, 0o711);
        let dst2 = base.join("dst2");
        std::fs::create_dir(&dst2).unwrap();
        std::fs::set_permissions(&dst2, std::fs::Permissions::from_mode(0o755)).unwrap();
        copy_tree(dir_fd(&src).as_fd(), dir_fd(&dst2).as_fd(), true).unwrap();
        assert_eq!(std::fs::metadata(&dst2).unwrap().mode() & 0o7777, 0o755);
        // A name already present in the target is an error naming it.
        let e = copy_tree(dir_fd(&src).as_fd(), dir_fd(&dst2).as_fd(), true).unwrap_err();
        assert_eq!(e.1, Errno::EEXIST);
        std::fs::remove_dir_all(&base).unwrap();
    }
}
