//! Escape attempts through mounts, the filesystem, /proc, /sys and /dev.

use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::sys::{self, Errno, cpath, en, reti};
use crate::{Verdict, gate};

/// Takes an optional path argument, or creates a scratch directory.
fn dir_arg(args: &[String], what: &str) -> Result<(PathBuf, bool), String> {
    match args.first() {
        Some(p) => Ok((PathBuf::from(p), false)),
        None => sys::scratch_dir(what).map(|p| (p, true)),
    }
}

fn rmdir(p: &Path) {
    if let Ok(c) = cpath(p) {
        // SAFETY: c is NUL-terminated; failure only leaves an empty directory behind.
        unsafe { libc::rmdir(c.as_ptr()) };
    }
}

fn unlink(p: &Path) {
    if let Ok(c) = cpath(p) {
        // SAFETY: c is NUL-terminated; failure only leaves a file behind.
        unsafe { libc::unlink(c.as_ptr()) };
    }
}

/// mount: a tmpfs on DIR (default: a scratch directory); unmounted again if it worked.
pub fn mount(args: &[String]) -> Verdict {
    let (dir, created) = match dir_arg(args, "mnt") {
        Ok(d) => d,
        Err(m) => return Verdict::Error(m),
    };
    let c = match cpath(&dir) {
        Ok(c) => c,
        Err(m) => return Verdict::Error(m),
    };
    // SAFETY: all strings are NUL-terminated; a null data pointer is allowed.
    let r = reti(unsafe {
        libc::mount(
            c"none".as_ptr(),
            c.as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            std::ptr::null(),
        )
    });
    if r.is_ok() {
        // SAFETY: c is NUL-terminated; undoing our own mount.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
    if created {
        rmdir(&dir);
    }
    gate(&format!("mount tmpfs on {}", dir.display()), r, &[])
}

/// umount: umount2(MNT_DETACH) of /proc, then of / (or of the given paths).
pub fn umount(args: &[String]) -> Verdict {
    let targets: Vec<String> = if args.is_empty() {
        vec!["/proc".into(), "/".into()]
    } else {
        args.to_vec()
    };
    let mut report = Vec::new();
    for t in &targets {
        let c = match cpath(Path::new(t)) {
            Ok(c) => c,
            Err(m) => return Verdict::Error(m),
        };
        // SAFETY: c is NUL-terminated. If this works it only detaches a mount in the
        // container's own mount namespace.
        let r = reti(unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) });
        match r {
            Ok(_) => return Verdict::Escaped(format!("umount2({t}, MNT_DETACH) succeeded")),
            Err(e) if !sys::refused(e) => {
                return gate(&format!("umount2({t}, MNT_DETACH)"), r, &[]);
            }
            Err(e) => report.push(format!("{t}: {}", en(e))),
        }
    }
    Verdict::Blocked(report.join(", "))
}

/// pivot-root: pivot_root(".", ".") at / (stacks the old root over the new one; only
/// the container's own mount namespace would change).
pub fn pivot_root(_: &[String]) -> Verdict {
    // SAFETY: the literal is NUL-terminated.
    if let Err(e) = reti(unsafe { libc::chdir(c"/".as_ptr()) }) {
        return Verdict::Error(format!("chdir /: {}", en(e)));
    }
    // SAFETY: both paths are NUL-terminated literals.
    let r = sys::ret(unsafe { libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) });
    if r.is_ok() {
        // SAFETY: detaching the old root that the pivot just stacked on top.
        unsafe { libc::umount2(c".".as_ptr(), libc::MNT_DETACH) };
    }
    gate("pivot_root(\".\", \".\")", r, &[])
}

/// chroot-breakout: the classic escape from a chroot. Hold an fd to the current root,
/// chroot into a subdirectory, fchdir back out through the fd, walk ".." many times and
/// chroot("."). Under pivot_root (with the old root detached) the walk stops at the
/// container root. Escaped when the final root differs from the starting one, or when
/// the optional host-only marker path becomes visible.
pub fn chroot_breakout(args: &[String]) -> Verdict {
    let marker = args.first().map(PathBuf::from);
    let before = match sys::stat(c"/") {
        Ok(s) => s,
        Err(e) => return Verdict::Error(format!("stat /: {}", en(e))),
    };
    if let Some(m) = &marker {
        if m.exists() {
            return Verdict::Error(format!(
                "the host marker {} is already visible before the attempt",
                m.display()
            ));
        }
    }
    let root_fd = match sys::open(c"/", libc::O_RDONLY | libc::O_DIRECTORY) {
        Ok(fd) => fd,
        Err(e) => return Verdict::Error(format!("open /: {}", en(e))),
    };
    let dir = match sys::scratch_dir("chroot") {
        Ok(d) => d,
        Err(m) => return Verdict::Error(m),
    };
    let cdir = match cpath(&dir) {
        Ok(c) => c,
        Err(m) => return Verdict::Error(m),
    };
    // SAFETY: cdir is NUL-terminated.
    if let Err(e) = reti(unsafe { libc::chroot(cdir.as_ptr()) }) {
        rmdir(&dir);
        return Verdict::Blocked(format!("chroot({}) refused: {}", dir.display(), en(e)));
    }
    // SAFETY: root_fd is an open directory descriptor.
    if let Err(e) = reti(unsafe { libc::fchdir(root_fd.as_raw_fd()) }) {
        return Verdict::Error(format!("fchdir to the old root: {}", en(e)));
    }
    // The working directory is the old root now: remove the scratch directory through a
    // path relative to it (the absolute path would resolve inside the chroot).
    let rel = dir.strip_prefix("/").unwrap_or(&dir).to_path_buf();
    rmdir(&rel);
    let mut walk_err = None;
    for _ in 0..256 {
        // SAFETY: the literal is NUL-terminated.
        if let Err(e) = reti(unsafe { libc::chdir(c"..".as_ptr()) }) {
            walk_err = Some(e);
            break;
        }
    }
    // SAFETY: the literal is NUL-terminated.
    if let Err(e) = reti(unsafe { libc::chroot(c".".as_ptr()) }) {
        return Verdict::Blocked(format!("the final chroot(\".\") was refused: {}", en(e)));
    }
    let after = match sys::stat(c"/") {
        Ok(s) => s,
        Err(e) => return Verdict::Error(format!("stat / after the walk: {}", en(e))),
    };
    if let Some(m) = &marker {
        if m.exists() {
            return Verdict::Escaped(format!("host marker {} is visible", m.display()));
        }
    }
    if (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino) {
        return Verdict::Escaped(format!(
            "root changed from dev {:#x} ino {} to dev {:#x} ino {}",
            before.st_dev, before.st_ino, after.st_dev, after.st_ino
        ));
    }
    let walk = walk_err.map_or(String::new(), |e| {
        format!(" (chdir \"..\" failed: {})", en(e))
    });
    Verdict::Blocked(format!(
        "the \"..\" walk stopped at the container root (dev {:#x} ino {}){walk}",
        before.st_dev, before.st_ino
    ))
}

/// The kernel's `struct file_handle` with room for the largest handle.
#[repr(C)]
struct FileHandle {
    handle_bytes: u32,
    handle_type: i32,
    f_handle: [u8; 128],
}

/// open-by-handle-at: get a handle for / and open it by handle, which needs
/// CAP_DAC_READ_SEARCH (the check comes before the handle is decoded). If the filesystem
/// gives no handle, a forged one (inode 2, generation 0) is used: the errno still tells.
pub fn open_by_handle(_: &[String]) -> Verdict {
    let mut h = FileHandle {
        handle_bytes: 128,
        handle_type: 0,
        f_handle: [0; 128],
    };
    let mut mount_id: libc::c_int = 0;
    // SAFETY: h is a writable file_handle with handle_bytes set to its capacity.
    let named = sys::ret(unsafe {
        libc::syscall(
            libc::SYS_name_to_handle_at,
            libc::AT_FDCWD,
            c"/".as_ptr(),
            &mut h as *mut FileHandle,
            &mut mount_id as *mut libc::c_int,
            0,
        )
    });
    let note = match named {
        Ok(_) => String::from("handle of /"),
        Err(e) => {
            // A 32-bit inode + generation handle (type 1) for inode 2, the usual root.
            h.handle_bytes = 8;
            h.handle_type = 1;
            h.f_handle = [0; 128];
            h.f_handle[0] = 2;
            format!("forged handle (name_to_handle_at: {})", en(e))
        }
    };
    let mount_fd = match sys::open(c"/", libc::O_RDONLY | libc::O_DIRECTORY) {
        Ok(fd) => fd,
        Err(e) => return Verdict::Error(format!("open /: {}", en(e))),
    };
    // SAFETY: h is a valid file_handle; a returned descriptor is closed below.
    let r = sys::ret(unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            mount_fd.as_raw_fd(),
            &h as *const FileHandle,
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    });
    if let Ok(fd) = r {
        sys::close_raw(fd);
    }
    // ESTALE or EINVAL here come after the permission check, so they count as passing it.
    gate(&format!("open_by_handle_at with a {note}"), r, &[])
}

/// mknod-block: mknod a block device 8:0 (the first SCSI disk) in a scratch location;
/// removed again if it worked.
pub fn mknod_block(_: &[String]) -> Verdict {
    let p = sys::scratch_name("blk");
    let c = match cpath(&p) {
        Ok(c) => c,
        Err(m) => return Verdict::Error(m),
    };
    // SAFETY: c is NUL-terminated.
    let r = reti(unsafe { libc::mknod(c.as_ptr(), libc::S_IFBLK | 0o600, libc::makedev(8, 0)) });
    match r {
        Ok(_) => {
            // Say whether the node is also usable; only opened, never read.
            let opened = sys::open(&c, libc::O_RDONLY).map(drop);
            unlink(&p);
            let how = match opened {
                Ok(()) => "and it opens".to_string(),
                Err(e) => format!("(opening it: {})", en(e)),
            };
            Verdict::Escaped(format!("mknod {} b 8 0 succeeded {how}", p.display()))
        }
        Err(_) => gate(&format!("mknod {} b 8 0", p.display()), r, &[]),
    }
}

/// Device numbers a container may see in /dev: null, zero, full, random, urandom, tty,
/// console, ptmx, and pty slaves.
fn harmless_dev(major: u32, minor: u32) -> bool {
    matches!(
        (major, minor),
        (1, 3) | (1, 5) | (1, 7) | (1, 8) | (1, 9) | (5, 0) | (5, 1) | (5, 2)
    ) || major == 136
}

/// dev-nodes: any block device, or a character device outside the harmless set
/// (e.g. /dev/mem, /dev/kmsg, a disk), in /dev and its subdirectories.
pub fn dev_nodes(_: &[String]) -> Verdict {
    let mut found = Vec::new();
    let mut dirs = vec![PathBuf::from("/dev")];
    let mut seen = 0usize;
    while let Some(d) = dirs.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for ent in rd.flatten() {
            let p = ent.path();
            let Ok(c) = cpath(&p) else { continue };
            let Ok(st) = sys::lstat(&c) else { continue };
            seen += 1;
            let kind = st.st_mode & libc::S_IFMT;
            if kind == libc::S_IFDIR && dirs.len() < 64 {
                dirs.push(p);
            } else if kind == libc::S_IFBLK || kind == libc::S_IFCHR {
                let (ma, mi) = (libc::major(st.st_rdev), libc::minor(st.st_rdev));
                if kind == libc::S_IFBLK || !harmless_dev(ma, mi) {
                    let t = if kind == libc::S_IFBLK { 'b' } else { 'c' };
                    found.push(format!("{} ({t} {ma}:{mi})", p.display()));
                }
            }
        }
    }
    if found.is_empty() {
        Verdict::Blocked(format!("{seen} entries under /dev, all harmless"))
    } else {
        Verdict::Escaped(format!("device nodes visible: {}", found.join(", ")))
    }
}

/// Without a mounted /proc a missing file proves nothing: the probe cannot even try.
fn need_proc() -> Result<(), Verdict> {
    if Path::new("/proc/self/status").is_file() {
        Ok(())
    } else {
        Err(Verdict::Error("/proc is not mounted".into()))
    }
}

/// Opens a /proc file and tells whether it is the real proc file or a mask over it.
fn proc_file(path: &str, flags: libc::c_int) -> Result<(std::os::fd::OwnedFd, bool), Errno> {
    let c = CString::new(path).map_err(|_| Errno::EINVAL)?;
    let fd = sys::open(&c, flags)?;
    let real = sys::fs_magic(fd.as_raw_fd()).map(|m| m == sys::PROC_MAGIC)?;
    Ok((fd, real))
}

/// sysrq-trigger: write 'h' (print help to the kernel log, harmless) to
/// /proc/sysrq-trigger. Blocked when it cannot be opened for writing, is masked (not a
/// proc file; nothing is written then) or the write fails.
pub fn sysrq_trigger(_: &[String]) -> Verdict {
    if let Err(v) = need_proc() {
        return v;
    }
    let (fd, real) = match proc_file("/proc/sysrq-trigger", libc::O_WRONLY) {
        Ok(x) => x,
        Err(e) => return Verdict::Blocked(format!("open for writing: {}", en(e))),
    };
    if !real {
        return Verdict::Blocked("masked (not a proc file)".into());
    }
    // SAFETY: writing one byte from a static buffer to an open fd.
    let r =
        sys::ret(unsafe { libc::write(fd.as_raw_fd(), b"h".as_ptr().cast(), 1) } as libc::c_long);
    match r {
        Ok(_) => Verdict::Escaped("wrote 'h' to the kernel's sysrq trigger".into()),
        Err(e) => Verdict::Blocked(format!("write: {}", en(e))),
    }
}

/// Reads up to 4 KiB of a file; returns the byte count.
fn read_some(fd: libc::c_int) -> Result<usize, Errno> {
    let mut buf = [0u8; 4096];
    // SAFETY: buf is a writable buffer of the given length.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    usize::try_from(n).map_err(|_| Errno::last())
}

/// read-kcore: read bytes of /proc/kcore. Blocked when it cannot be opened or read, or
/// reads as empty (masked by /dev/null).
pub fn read_kcore(_: &[String]) -> Verdict {
    if let Err(v) = need_proc() {
        return v;
    }
    let (fd, real) = match proc_file("/proc/kcore", libc::O_RDONLY) {
        Ok(x) => x,
        Err(e) => return Verdict::Blocked(format!("open: {}", en(e))),
    };
    match read_some(fd.as_raw_fd()) {
        Ok(0) => Verdict::Blocked(format!(
            "reads 0 bytes ({})",
            if real { "empty" } else { "masked" }
        )),
        Ok(n) => Verdict::Escaped(format!("read {n} bytes of /proc/kcore")),
        Err(e) => Verdict::Blocked(format!("read: {}", en(e))),
    }
}

/// proc-masked: the masked files must read as empty (or be absent/unreadable) and the
/// masked directories must list as empty.
pub fn proc_masked(_: &[String]) -> Verdict {
    if let Err(v) = need_proc() {
        return v;
    }
    const FILES: &[&str] = &[
        "/proc/kcore",
        "/proc/keys",
        "/proc/timer_list",
        "/proc/sched_debug",
        "/proc/latency_stats",
    ];
    const DIRS: &[&str] = &["/proc/acpi", "/proc/scsi", "/sys/firmware"];
    let mut leaks = Vec::new();
    let mut fine = Vec::new();
    for f in FILES {
        let c = CString::new(*f).unwrap_or_default();
        match sys::open(&c, libc::O_RDONLY) {
            Err(e) => fine.push(format!("{f}: {e:?}")),
            Ok(fd) => match read_some(fd.as_raw_fd()) {
                Ok(0) => fine.push(format!("{f}: empty")),
                Ok(n) => leaks.push(format!("{f} ({n}+ bytes)")),
                Err(e) => fine.push(format!("{f}: {e:?}")),
            },
        }
    }
    for d in DIRS {
        match std::fs::read_dir(d) {
            Err(e) => fine.push(format!("{d}: {}", e.kind())),
            Ok(rd) => {
                let n = rd.count();
                if n == 0 {
                    fine.push(format!("{d}: empty"));
                } else {
                    leaks.push(format!("{d} ({n} entries)"));
                }
            }
        }
    }
    if leaks.is_empty() {
        Verdict::Blocked(fine.join(", "))
    } else {
        Verdict::Escaped(format!("readable: {}", leaks.join(", ")))
    }
}

/// proc-readonly: /proc/sys, /proc/bus, /proc/fs and /proc/irq (those present) must be
/// mounted read-only.
pub fn proc_readonly(_: &[String]) -> Verdict {
    let mut writable = Vec::new();
    let mut fine = Vec::new();
    for p in ["/proc/sys", "/proc/bus", "/proc/fs", "/proc/irq"] {
        let c = CString::new(p).unwrap_or_default();
        // SAFETY: an all-zero statvfs is a valid value of this plain C struct.
        let mut sv: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: c is NUL-terminated and sv is a writable buffer of the right type.
        match reti(unsafe { libc::statvfs(c.as_ptr(), &mut sv) }) {
            Err(e) => fine.push(format!("{p}: {e:?}")),
            Ok(_) if sv.f_flag & libc::ST_RDONLY != 0 => fine.push(format!("{p}: ro")),
            Ok(_) => writable.push(p),
        }
    }
    if fine.iter().all(|f| f.contains("ENOENT")) && writable.is_empty() {
        return Verdict::Error("/proc is not mounted (none of the paths exist)".into());
    }
    if writable.is_empty() {
        Verdict::Blocked(fine.join(", "))
    } else {
        Verdict::Escaped(format!("mounted read-write: {}", writable.join(", ")))
    }
}

/// Writes `value` to `path` (opened O_WRONLY). Blocked on any refusal.
fn write_back(path: &str, value: &[u8]) -> Verdict {
    let c = match CString::new(path) {
        Ok(c) => c,
        Err(_) => return Verdict::Error(format!("path {path:?} contains a NUL byte")),
    };
    let fd = match sys::open(&c, libc::O_WRONLY) {
        Ok(fd) => fd,
        Err(e) => return Verdict::Blocked(format!("open {path} for writing: {}", en(e))),
    };
    // SAFETY: value is a readable buffer of the given length; fd is open.
    let r = sys::ret(
        unsafe { libc::write(fd.as_raw_fd(), value.as_ptr().cast(), value.len()) } as libc::c_long,
    );
    match r {
        Ok(_) => Verdict::Escaped(format!("wrote its current value back to {path}")),
        Err(e) => Verdict::Blocked(format!("write {path}: {}", en(e))),
    }
}

/// write-proc-sys: write the current value of /proc/sys/kernel/domainname back.
pub fn write_proc_sys(_: &[String]) -> Verdict {
    let path = "/proc/sys/kernel/domainname";
    let Some(cur) = sys::read_text(path) else {
        return Verdict::Error(format!("cannot read {path} (is /proc mounted?)"));
    };
    write_back(path, cur.as_bytes())
}

/// write-sys: write a sysfs file's current value back (PATH, or the first present of a
/// few harmless ones). Blocked when sysfs is absent or the write is refused.
pub fn write_sys(args: &[String]) -> Verdict {
    let candidates: Vec<String> = if args.is_empty() {
        [
            "/sys/kernel/uevent_helper",
            "/sys/kernel/rcu_expedited",
            "/sys/kernel/rcu_normal",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    } else {
        args.to_vec()
    };
    for path in &candidates {
        let Some(cur) = sys::read_text(path) else {
            continue;
        };
        // An empty value is written as a lone newline, which the kernel strips again.
        let value = if cur.is_empty() {
            "\n".to_string()
        } else {
            cur
        };
        return write_back(path, value.as_bytes());
    }
    if Path::new("/sys/kernel").is_dir() {
        Verdict::Error(format!("none of {} is readable", candidates.join(", ")))
    } else {
        Verdict::Blocked("no sysfs kernel directory (sysfs not mounted)".into())
    }
}
