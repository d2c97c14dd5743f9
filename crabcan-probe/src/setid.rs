//! Escape attempts that leave privilege in a file: setuid/setgid bits and file
//! capabilities. With a directory argument the files stay there, so that the host can judge
//! them from outside; without one they go in a scratch location and are removed.

use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::Verdict;
use crate::sys::{self, Errno, SysResult, cpath, en, show};

/// Where one attempt's file goes: `DIR/name` (kept) or a scratch name (removed).
struct Target {
    path: PathBuf,
    c: CString,
    keep: bool,
}

impl Target {
    fn new(dir: Option<&Path>, name: &str) -> Result<Target, String> {
        let (path, keep) = match dir {
            Some(d) => (d.join(name), true),
            None => (sys::scratch_name(name), false),
        };
        let c = cpath(&path)?;
        Ok(Target { path, c, keep })
    }

    /// The setuid/setgid bits of the file now, if it exists.
    fn setid_bits(&self) -> Option<u32> {
        sys::lstat(&self.c).ok().map(|st| st.st_mode & 0o6000)
    }

    /// Creates the file empty with a plain mode (for the attempts that change a file).
    fn create_plain(&self) -> Result<(), String> {
        sys::open(
            &self.c,
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
        )
        .map(drop)
        .map_err(|e| format!("create {}: {}", self.path.display(), en(e)))
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if !self.keep {
            // SAFETY: c is NUL-terminated; failure only leaves a file behind.
            unsafe { libc::unlink(self.c.as_ptr()) };
        }
    }
}

/// The optional directory argument; it must exist (the caller made it).
fn dir_arg(args: &[String]) -> Result<Option<PathBuf>, Verdict> {
    match args.first() {
        None => Ok(None),
        Some(d) if Path::new(d).is_dir() => Ok(Some(PathBuf::from(d))),
        Some(d) => Err(Verdict::Error(format!("{d} is not a directory"))),
    }
}

/// The verdict over several calls that each tried to leave a setid bit on a file.
fn judge(stuck: Vec<String>, report: Vec<String>) -> Verdict {
    if stuck.is_empty() {
        Verdict::Blocked(format!(
            "no setuid/setgid bit stuck ({})",
            report.join(", ")
        ))
    } else {
        Verdict::Escaped(stuck.join(", "))
    }
}

/// The modes tried, one bit at a time, so that a filter watching only one of them shows.
const SETID_MODES: [libc::c_long; 2] = [0o4755, 0o2755];

/// `struct open_how` of openat2.
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// create-suid: create files with setuid/setgid bits in the mode through open, openat,
/// creat, mknod, mknodat and openat2; escaped when a file ends up with either bit.
pub fn create_suid(args: &[String]) -> Verdict {
    let dir = match dir_arg(args) {
        Ok(d) => d,
        Err(v) => return v,
    };
    // SAFETY: umask cannot fail; 0 keeps every requested bit visible.
    unsafe { libc::umask(0) };
    let mut stuck = Vec::new();
    let mut report = Vec::new();
    type Call = fn(&Target, libc::c_long) -> SysResult;
    let calls: [(&str, Call); 6] = [
        ("open", |t, mode| {
            raw(libc::SYS_open, &[ptr(&t.c), CREATE, mode])
        }),
        ("openat", |t, mode| {
            raw(libc::SYS_openat, &[AT, ptr(&t.c), CREATE, mode])
        }),
        ("creat", |t, mode| raw(libc::SYS_creat, &[ptr(&t.c), mode])),
        ("mknod", |t, mode| {
            raw(libc::SYS_mknod, &[ptr(&t.c), REG | mode, 0])
        }),
        ("mknodat", |t, mode| {
            raw(libc::SYS_mknodat, &[AT, ptr(&t.c), REG | mode, 0])
        }),
        ("openat2", |t, mode| {
            let how = OpenHow {
                flags: CREATE as u64,
                mode: mode as u64,
                resolve: 0,
            };
            let size = std::mem::size_of::<OpenHow>() as libc::c_long;
            raw(
                libc::SYS_openat2,
                &[AT, ptr(&t.c), &how as *const OpenHow as libc::c_long, size],
            )
        }),
    ];
    for (name, call) in calls {
        for mode in SETID_MODES {
            let t = match Target::new(dir.as_deref(), &format!("{name}-{mode:o}")) {
                Ok(t) => t,
                Err(m) => return Verdict::Error(m),
            };
            let r = call(&t, mode);
            if let Ok(fd) = r {
                if !name.starts_with("mknod") {
                    sys::close_raw(fd);
                }
            }
            if let Some(bits @ 1..) = t.setid_bits() {
                stuck.push(format!(
                    "{name} created {} with mode bits {bits:o}",
                    t.path.display()
                ));
            }
            report.push(format!("{name} {mode:o}: {}", show(&r)));
        }
    }
    judge(stuck, report)
}

const CREATE: libc::c_long =
    (libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC) as libc::c_long;
const AT: libc::c_long = libc::AT_FDCWD as libc::c_long;
const REG: libc::c_long = libc::S_IFREG as libc::c_long;

/// A raw syscall with up to four arguments.
fn raw(nr: libc::c_long, a: &[libc::c_long]) -> SysResult {
    let g = |i: usize| a.get(i).copied().unwrap_or(0);
    // SAFETY: each caller passes a path kept alive by its Target, integers, or a pointer
    // to a live open_how; missing trailing arguments are zero.
    sys::ret(unsafe { libc::syscall(nr, g(0), g(1), g(2), g(3)) })
}

fn ptr(c: &CString) -> libc::c_long {
    c.as_ptr() as libc::c_long
}

/// chmod-suid: on a fresh file each, set the setuid and setgid bits through chmod, fchmod,
/// fchmodat and fchmodat2; escaped when either bit sticks.
pub fn chmod_suid(args: &[String]) -> Verdict {
    let dir = match dir_arg(args) {
        Ok(d) => d,
        Err(v) => return v,
    };
    let mut stuck = Vec::new();
    let mut report = Vec::new();
    for name in ["chmod", "fchmod", "fchmodat", "fchmodat2"] {
        for mode in SETID_MODES {
            let t = match Target::new(dir.as_deref(), &format!("{name}-{mode:o}")) {
                Ok(t) => t,
                Err(m) => return Verdict::Error(m),
            };
            if let Err(m) = t.create_plain() {
                return Verdict::Error(m);
            }
            let fd = match sys::open(&t.c, libc::O_RDONLY | libc::O_NOFOLLOW) {
                Ok(fd) => fd,
                Err(e) => return Verdict::Error(format!("open {}: {}", t.path.display(), en(e))),
            };
            let r = match name {
                "chmod" => raw(libc::SYS_chmod, &[ptr(&t.c), mode]),
                "fchmod" => raw(
                    libc::SYS_fchmod,
                    &[libc::c_long::from(fd.as_raw_fd()), mode],
                ),
                "fchmodat" => raw(libc::SYS_fchmodat, &[AT, ptr(&t.c), mode]),
                // fchmodat2 came with Linux 6.6; older kernels answer ENOSYS.
                _ => raw(libc::SYS_fchmodat2, &[AT, ptr(&t.c), mode, 0]),
            };
            if let Some(bits @ 1..) = t.setid_bits() {
                stuck.push(format!("{name} {mode:o} set mode bits {bits:o}"));
            }
            report.push(format!("{name} {mode:o}: {}", show(&r)));
        }
    }
    judge(stuck, report)
}

/// A version 2 `security.capability` value: CAP_NET_RAW permitted and effective.
fn net_raw_fcap() -> [u8; 20] {
    const VFS_CAP_REVISION_2: u32 = 0x0200_0000;
    const VFS_CAP_FLAGS_EFFECTIVE: u32 = 1;
    let mut v = [0u8; 20];
    v[0..4].copy_from_slice(&(VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE).to_le_bytes());
    v[4..8].copy_from_slice(&(1u32 << 13).to_le_bytes()); // permitted: CAP_NET_RAW
    v
}

/// set-fcap: give a fresh file a file capability (CAP_NET_RAW) with setxattr, and on a
/// second file with fsetxattr; escaped when a `security.capability` attribute exists after.
pub fn set_fcap(args: &[String]) -> Verdict {
    let dir = match dir_arg(args) {
        Ok(d) => d,
        Err(v) => return v,
    };
    let value = net_raw_fcap();
    let name = c"security.capability";
    let mut found = Vec::new();
    let mut report = Vec::new();
    for call in ["setxattr", "fsetxattr"] {
        let t = match Target::new(dir.as_deref(), &format!("{call}-fcap")) {
            Ok(t) => t,
            Err(m) => return Verdict::Error(m),
        };
        if let Err(m) = t.create_plain() {
            return Verdict::Error(m);
        }
        let r = if call == "setxattr" {
            // SAFETY: path and name are NUL-terminated; value is a live buffer of its length.
            sys::reti(unsafe {
                libc::setxattr(
                    t.c.as_ptr(),
                    name.as_ptr(),
                    value.as_ptr().cast(),
                    value.len(),
                    0,
                )
            })
        } else {
            let fd = match sys::open(&t.c, libc::O_RDONLY | libc::O_NOFOLLOW) {
                Ok(fd) => fd,
                Err(e) => return Verdict::Error(format!("open {}: {}", t.path.display(), en(e))),
            };
            // SAFETY: as above, on an open descriptor.
            sys::reti(unsafe {
                libc::fsetxattr(
                    fd.as_raw_fd(),
                    name.as_ptr(),
                    value.as_ptr().cast(),
                    value.len(),
                    0,
                )
            })
        };
        let mut back = [0u8; 64];
        // SAFETY: path and name are NUL-terminated; back is a writable buffer of its length.
        let got = sys::ret(unsafe {
            libc::getxattr(
                t.c.as_ptr(),
                name.as_ptr(),
                back.as_mut_ptr().cast(),
                back.len(),
            )
        } as libc::c_long);
        match (&r, got) {
            (Err(Errno::EOPNOTSUPP), Err(_)) => {
                return Verdict::Error(format!(
                    "{}: the filesystem keeps no extended attributes, nothing to try",
                    t.path.display()
                ));
            }
            (_, Ok(n)) => found.push(format!(
                "{call} left a {n}-byte security.capability on {}",
                t.path.display()
            )),
            (_, Err(_)) => {}
        }
        report.push(format!("{call}: {}", show(&r)));
    }
    if found.is_empty() {
        Verdict::Blocked(format!(
            "no file capability was set ({})",
            report.join(", ")
        ))
    } else {
        Verdict::Escaped(found.join(", "))
    }
}
