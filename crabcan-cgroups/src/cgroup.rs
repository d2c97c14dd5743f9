//! Steps shared by every hierarchy: write a cgroup file, sweep the cgroups of dead runs,
//! kill and remove a cgroup tree.

use crabcan_errors::{Errcode, Result};
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

/// How long a removal waits for the kernel to let go of an emptied cgroup.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(3);

/// The directory name of the cgroup `crabcan run` with pid `pid` makes for the container
/// `name`: `crabcan-<name>@<pid>`. No OCI container id holds an `@`, so the default cgroup
/// of an OCI container (its id, beside a run's in the same directory) never takes this
/// form: the sweep of dead runs cannot take one for a run's, nor a run reuse one.
pub fn run_leaf(name: &str, pid: u32) -> String {
    format!("{}{name}@{pid}", crate::plan::CGROUP_PREFIX)
}

/// The pid of the crabcan that owns a run's container cgroup ([`run_leaf`]).
pub fn owner_pid(dir_name: &str) -> Option<i32> {
    let rest = dir_name.strip_prefix(crate::plan::CGROUP_PREFIX)?;
    let (_, pid) = rest.rsplit_once('@')?;
    pid.parse().ok().filter(|p| *p > 0)
}

/// Removes the empty cgroups of containers whose crabcan is gone (a SIGKILLed crabcan
/// cannot remove its own). A cgroup still holding processes refuses `rmdir` and stays.
pub(crate) fn sweep_stale(parent: &Path) {
    let _ = for_each_name(parent, |name| {
        let Some(pid) = std::str::from_utf8(name).ok().and_then(owner_pid) else {
            return;
        };
        let gone =
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) == Err(Errno::ESRCH);
        if gone {
            let _ = fs::remove_dir(parent.join(std::ffi::OsStr::from_bytes(name)));
        }
    });
}

/// Calls `f` with the name of each entry of the directory `dir` (not `.` nor `..`), read
/// with getdents64 into a buffer on the stack: no allocation, unlike `read_dir` (whose
/// directory stream is a fresh 2 KiB allocation of the C library, touched whole: three
/// fresh pages per directory, nine directories per run).
fn for_each_name(dir: &Path, mut f: impl FnMut(&[u8])) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let d = fs::File::open(dir)?;
    let mut buf = [0u8; 2048];
    loop {
        // SAFETY: getdents64 writes at most `buf.len()` bytes into `buf`, which outlives
        // the call, from a descriptor open for the whole call.
        let n = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                d.as_raw_fd(),
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        let n = match usize::try_from(n) {
            Ok(0) => return Ok(()),
            Ok(n) => n.min(buf.len()),
            Err(_) => return Err(io::Error::last_os_error()),
        };
        for name in dirent_names(&buf[..n]) {
            if name != b"." && name != b".." {
                f(name);
            }
        }
    }
}

/// The names in a buffer of `linux_dirent64` records (d_ino u64, d_off i64, d_reclen u16,
/// d_type u8, then the NUL-terminated name); a record that does not fit ends the walk.
fn dirent_names(buf: &[u8]) -> impl Iterator<Item = &[u8]> {
    const NAME: usize = 19;
    let mut at = 0;
    std::iter::from_fn(move || {
        let rec = buf.get(at..)?;
        let len = usize::from(u16::from_ne_bytes([*rec.get(16)?, *rec.get(17)?]));
        let body = rec.get(NAME..len)?;
        at += len;
        Some(body.split(|&b| b == 0).next().unwrap_or(body))
    })
}

/// Removes each of `dirs` that is an empty cgroup, the usual case once a container's
/// processes are gone, with one rmdir each. The kernel refuses the rmdir of a cgroup that still
/// holds a process or a sub-cgroup: those are returned untouched for a full removal
/// ([`crate::ContainerCgroup::remove`]). A directory that is no cgroup is never touched, nor
/// returned: nothing in it is the container's to kill.
pub fn remove_if_empty(dirs: &[std::path::PathBuf]) -> Vec<std::path::PathBuf> {
    use nix::sys::statfs::{CGROUP_SUPER_MAGIC, CGROUP2_SUPER_MAGIC, statfs};
    let is_cgroup = |d: &std::path::PathBuf| {
        statfs(d.as_path())
            .is_ok_and(|s| [CGROUP_SUPER_MAGIC, CGROUP2_SUPER_MAGIC].contains(&s.filesystem_type()))
    };
    dirs.iter()
        .filter(|d| is_cgroup(d) && fs::remove_dir(d).is_err())
        .cloned()
        .collect()
}

/// Kills every process in `dir` and below, then removes the directories bottom-up, retrying
/// while the kernel still counts exiting processes.
pub(crate) fn remove_tree(dir: &Path) -> Result<()> {
    let deadline = Instant::now() + REMOVE_TIMEOUT;
    let mut delay = Duration::from_millis(1);
    loop {
        kill_all(dir);
        let result = remove_children(dir).and_then(|()| {
            fs::remove_dir(dir).or_else(|e| match e.kind() {
                io::ErrorKind::NotFound => Ok(()),
                _ => Err(e),
            })
        });
        match result {
            Ok(()) => return Ok(()),
            Err(e)
                if e.raw_os_error() == Some(Errno::EBUSY as i32) && Instant::now() < deadline =>
            {
                sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(50));
            }
            Err(e) => return Err(io_err(e, format!("remove cgroup {}", dir.display()))),
        }
    }
}

/// Removes sub-cgroups the container may have made (a cgroup directory holds only kernel
/// files, which need no removal, and sub-cgroups).
fn remove_children(dir: &Path) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            let sub = entry.path();
            remove_children(&sub)?;
            match fs::remove_dir(&sub) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// SIGKILLs everything in the subtree: cgroup.kill where the kernel has it (5.14+), else
/// each pid listed in cgroup.procs.
fn kill_all(dir: &Path) {
    let killer = dir.join("cgroup.kill");
    if killer.exists() {
        let _ = write_file(&killer, "1");
        return;
    }
    if let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) {
        for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                kill_all(&entry.path());
            }
        }
    }
}

/// An io error as an [`Errcode`] naming `what` and keeping its errno.
pub(crate) fn io_err(e: io::Error, what: String) -> Errcode {
    Errcode::sys(
        what,
        Errno::from_raw(e.raw_os_error().unwrap_or(Errno::EIO as i32)),
    )
}

/// Reads a file the kernel makes as it is read (/proc, cgroupfs) whole. Such files report
/// no size, so a sized read starts with a 32-byte probe and doubles from there: eight
/// read(2)s for a mountinfo, each making the text again. Here each read(2) asks for all the
/// room the buffer has (4 KiB, doubled while full), and the room is not zeroed first: only
/// the pages the kernel writes are touched (a zeroed 16 KiB buffer was four fresh pages,
/// about a microsecond each, three times per start).
pub(crate) fn read_virtual(path: &Path) -> io::Result<Vec<u8>> {
    use std::os::fd::AsRawFd;
    let f = fs::File::open(path)?;
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    loop {
        if buf.len() == buf.capacity() {
            buf.reserve(buf.capacity());
        }
        let spare = buf.spare_capacity_mut();
        // SAFETY: read(2) writes at most `spare.len()` bytes into the buffer's spare room,
        // which this Vec owns; the descriptor is open for the whole call.
        let n = unsafe { libc::read(f.as_raw_fd(), spare.as_mut_ptr().cast(), spare.len()) };
        match n {
            0 => break,
            n if n > 0 => {
                // SAFETY: the kernel initialised the `n` bytes after the old length.
                unsafe { buf.set_len(buf.len() + n as usize) }
            }
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(buf)
}

/// Cgroup files take one value per write(2), so the text must go in one call.
pub(crate) fn write_file(path: &Path, value: &str) -> io::Result<()> {
    let mut f = fs::OpenOptions::new().write(true).open(path)?;
    f.write_all(value.as_bytes())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn a_virtual_file_is_read_whole_past_the_first_buffer() {
        let dir = std::env::temp_dir().join(format!("crabcan-read-virtual-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for len in [0usize, 1, 4095, 4096, 4097, 3 * 4096 + 5] {
            let file = dir.join(format!("f{len}"));
            let text: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            std::fs::write(&file, &text).unwrap();
            assert_eq!(super::read_virtual(&file).unwrap(), text, "{len} bytes");
        }
        std::fs::remove_dir_all(&dir).unwrap();
        // A file the kernel makes as it is read, with no size.
        let cg = super::read_virtual(Path::new("/proc/self/cgroup")).unwrap();
        assert_eq!(cg, std::fs::read("/proc/self/cgroup").unwrap());
        assert!(super::read_virtual(Path::new("/proc/self/no-such-file")).is_err());
    }

    #[test]
    fn every_name_of_a_directory_is_listed_once() {
        let dir = std::env::temp_dir().join(format!("crabcan-names-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // More names than one 2 KiB buffer of records holds.
        let mut want: Vec<Vec<u8>> = (0..300)
            .map(|i| format!("crabcan-name-{i:03}-{}", "x".repeat(i % 40)).into_bytes())
            .collect();
        for n in &want {
            std::fs::write(dir.join(std::str::from_utf8(n).unwrap()), "").unwrap();
        }
        let mut got = Vec::new();
        super::for_each_name(&dir, |n| got.push(n.to_vec())).unwrap();
        want.sort();
        got.sort();
        assert_eq!(got, want);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(super::for_each_name(&dir, |_| ()).is_err());
    }

    #[test]
    fn a_record_cut_short_ends_the_walk() {
        // d_reclen 24: a record with the name "ab" and its NUL and padding.
        let mut rec = vec![0u8; 24];
        rec[16..18].copy_from_slice(&24u16.to_ne_bytes());
        rec[19] = b'a';
        rec[20] = b'b';
        let two = [rec.clone(), rec.clone()].concat();
        assert_eq!(super::dirent_names(&two).count(), 2);
        assert_eq!(super::dirent_names(&two[..40]).count(), 1);
        let mut bad = rec.clone();
        bad[16..18].copy_from_slice(&200u16.to_ne_bytes());
        assert_eq!(super::dirent_names(&bad).count(), 0);
        let mut zero = rec;
        zero[16..18].copy_from_slice(&0u16.to_ne_bytes());
        assert_eq!(super::dirent_names(&zero).count(), 0);
    }

    #[test]
    fn owner_pid_is_the_number_after_the_at() {
        let leaf = super::run_leaf("brave-otter-12", 4321);
        assert_eq!(leaf, "crabcan-brave-otter-12@4321");
        assert_eq!(super::owner_pid(&leaf), Some(4321));
        assert_eq!(super::owner_pid("crabcan-box@7"), Some(7));
        assert_eq!(super::owner_pid("crabcan-box"), None);
        assert_eq!(super::owner_pid("other-box@7"), None);
        assert_eq!(super::owner_pid("crabcan-box@0"), None);
        // An OCI container's default cgroup (its id) is never a run's.
        assert_eq!(super::owner_pid("crabcan-box-7"), None);
    }
}
