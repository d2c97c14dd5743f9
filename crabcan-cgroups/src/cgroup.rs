//! Steps shared by every hierarchy: write a cgroup file, sweep the cgroups of dead runs,
//! kill and remove a cgroup tree.

use crabcan_errors::{Errcode, Result};
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::fs;
use std::io::{self, Write};
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
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(owner_pid) else {
            continue;
        };
        let gone =
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) == Err(Errno::ESRCH);
        if gone {
            let _ = fs::remove_dir(e.path());
        }
    }
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
/// read(2)s for a mountinfo, each making the text again. One buffer of 16 KiB takes the
/// usual ones in one.
pub(crate) fn read_virtual(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut f = fs::File::open(path)?;
    let mut buf = vec![0u8; 16 * 1024];
    let mut n = 0;
    loop {
        if n == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(n);
    Ok(buf)
}

/// Cgroup files take one value per write(2), so the text must go in one call.
pub(crate) fn write_file(path: &Path, value: &str) -> io::Result<()> {
    let mut f = fs::OpenOptions::new().write(true).open(path)?;
    f.write_all(value.as_bytes())
}

#[cfg(test)]
mod tests {
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
