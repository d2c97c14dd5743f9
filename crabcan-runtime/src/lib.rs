//! The OCI container lifecycle over a state directory: create, start, state, kill, delete,
//! list and run, with runc's semantics and wording where engines depend on them.
//!
//! A container is a directory `<root>/<id>` locked with `flock` by every command that
//! changes it, holding `state.json` (see [`State`]) and, between create and start,
//! `exec.fifo`, on which the container's process blocks. No crabcan process stays
//! resident: what `delete` must undo is in the state file. The exception is a container of
//! `crabcan run --name`, whose foreground crabcan owns its record (see [`Registration`]).
//!
//! `crabcan run`'s one-shot container goes through the same steps in [`oneshot`]: create,
//! start, wait and delete, with crabcan in the foreground.

mod create;
mod exec;
mod exec_tty;
mod foreground;
mod hooks;
pub mod oneshot;
mod ops;
mod state;

pub use create::{CreateOptions, create};
pub use exec::{CONFIG_COPY, ExecOptions, exec, exec_detached, process_json};
pub use foreground::{
    OWNER_FILE, Owner, Registration, RunSpec, check_run_spec, config_json, read_owner,
    remove_if_owned, rlimit_name,
};
pub use ops::{Event, filter_ps, pause, pids, resume, stats, update, watch};
pub use state::{
    FIFO, HookRecord, Locked, MAX_ID_LEN, OciState, STATE_FILE, State, Status, default_root,
    not_exist, now_rfc3339, parse_stat, read_state, rfc3339, start_time, validate_id,
};

use crabcan_errors::{Errcode, Result};
use nix::sys::signal::Signal;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long `delete --force` and `start` wait for a process to go or answer.
const WAIT_LIMIT: Duration = Duration::from_secs(10);

/// The status of a recorded container, from its live process (and its freezer).
pub fn status_of(dir: &Path, s: &State) -> Status {
    state::status(dir, s, || {
        open_cgroup(s).is_some_and(|cg| cg.is_frozen().unwrap_or(false))
    })
}

/// The container's cgroup as create recorded it, if any of its directories is left.
pub(crate) fn open_cgroup(s: &State) -> Option<crabcan_cgroups::ContainerCgroup> {
    let path = s.cgroup_path.as_deref()?;
    if !s.cgroup_paths.iter().any(|p| p.is_dir()) {
        return None;
    }
    let layout = crabcan_cgroups::Layout::detect().ok()?;
    let path = crabcan_cgroups::CgroupPath::parse(path).ok()?;
    crabcan_cgroups::ContainerCgroup::open_paths(&layout, &path, &s.cgroup_paths).ok()
}

/// Removes the container's cgroups. Once its processes are gone (the usual case at delete)
/// each recorded directory is empty and goes with one rmdir; what is left (a process, a
/// sub-cgroup) is killed and removed through the layout.
fn remove_cgroups(s: &State) -> Result<()> {
    let Some(path) = s.cgroup_path.as_deref() else {
        return Ok(());
    };
    let mut left = crabcan_cgroups::remove_if_empty(&s.cgroup_paths);
    left.retain(|d| d.is_dir());
    if left.is_empty() {
        return Ok(());
    }
    // What is left holds processes or sub-cgroups: failing to reach it is an error, never
    // a silent success.
    let layout = crabcan_cgroups::Layout::detect()?;
    let path = crabcan_cgroups::CgroupPath::parse(path)?;
    crabcan_cgroups::ContainerCgroup::open_paths(&layout, &path, &left)?.remove()
}

/// runc's `state` of a container.
pub fn oci_state(dir: &Path, s: &State) -> OciState {
    state_as(s, status_of(dir, s))
}

/// The state of the recorded container `s` with `status` (no process once stopped).
fn state_as(s: &State, status: Status) -> OciState {
    OciState {
        oci_version: crabcan_oci::OCI_VERSION.into(),
        id: s.id.clone(),
        status,
        pid: if status == Status::Stopped { 0 } else { s.pid },
        bundle: s.bundle.clone(),
        rootfs: s.rootfs.clone(),
        created: s.created.clone(),
        owner: state::user_name(s.owner_uid),
        annotations: s.annotations.clone(),
    }
}

/// `state ID`.
pub fn state(root: &Path, id: &str) -> Result<OciState> {
    validate_id(id)?;
    let dir = root.join(id);
    let s = read_state(&dir)?;
    Ok(oci_state(&dir, &s))
}

/// `list`: every container under the root, by id.
pub fn list(root: &Path) -> Result<Vec<OciState>> {
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Errcode::setup(format!(
                "cannot read {}: {e}",
                root.display()
            )));
        }
    };
    // What removals that died left behind is no container: clear it while looking.
    state::sweep_gone(root);
    let mut out = Vec::new();
    for e in entries.flatten() {
        let dir = e.path();
        // A directory being removed (see state::remove_at_once) is no container any more.
        if e.file_name().to_string_lossy().contains('#') {
            continue;
        }
        // Directories without a state file are being created, or are not containers.
        if let Ok(s) = read_state(&dir) {
            out.push(oci_state(&dir, &s));
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// Parses a signal as `kill` takes it: `TERM`, `SIGTERM`, `term` or `15`.
pub fn parse_signal(s: &str) -> Result<Signal> {
    let bad = || Errcode::usage(format!("unknown signal {s:?}"));
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| bad());
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse::<Signal>().map_err(|_| bad())
}

/// `start ID`: lets a created container run its command, then runs the poststart hooks.
pub fn start(root: &Path, id: &str) -> Result<()> {
    let l = Locked::open(root, id)?;
    let s = l.read()?;
    match status_of(l.dir(), &s) {
        Status::Created => {}
        Status::Stopped => return Err(Errcode::usage("cannot start a container that has stopped")),
        _ => return Err(Errcode::usage("cannot start an already running container")),
    }
    release(l, &s)?;
    if s.poststart.is_empty() {
        return Ok(());
    }
    // The state as of the start: a short command may have ended already (and its state
    // would then name no process), but the hooks are told of the container that started.
    let st = state_json_as(&s, Status::Running);
    for h in &s.poststart {
        // The spec's rule: a failing poststart hook is a warning, the container runs on.
        if let Err(e) = hooks::run("poststart", h, &st) {
            log::warn!("{e}");
        }
    }
    Ok(())
}

/// Opens the fifo for reading, which unblocks the container's process, and waits for its
/// byte, sent once its startContainer hooks ran; then removes the fifo, which marks the
/// container as running.
///
/// The wait is as long as those hooks take, so the container's lock is given up once the
/// fifo is open: `kill` and `delete --force` are not held up by a hook that hangs. Until
/// the byte, the container stays `created`, as runc reports it. A second `start` meanwhile
/// is refused (the fifo is locked). A `start` that is killed meanwhile leaves the process
/// without a reader for its byte, and it ends (`stopped`); only one killed before the
/// process opened its end leaves it to a later `start`.
fn release(l: Locked, s: &State) -> Result<()> {
    use nix::fcntl::OFlag;
    use nix::poll::PollFlags;
    let fifo = l.dir().join(FIFO);
    // Non-blocking, so a container that died meanwhile cannot hang `start`.
    let fd = nix::fcntl::open(
        &fifo,
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| Errcode::sys(format!("open {}", fifo.display()), e))?;
    // One start at a time, past the container's lock too: the fifo itself is locked for as
    // long as this start waits (a start that is killed lets go of it with its descriptor).
    // A second reader would race this one for the byte, and the loser would report a
    // failure of a container that runs.
    let fd = match nix::fcntl::Flock::lock(fd, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(fd) => fd,
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
            return Err(Errcode::usage("cannot start an already running container"));
        }
        Err((_, e)) => return Err(Errcode::sys(format!("lock {}", fifo.display()), e)),
    };
    // The fifo is removed in this very directory, never by its path once the lock is
    // given up: a delete and a new create of the same id meanwhile make a new directory.
    let dir = nix::fcntl::open(
        l.dir(),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| Errcode::sys(format!("open {}", l.dir().display()), e))?;
    drop(l);
    let remove_fifo = || nix::unistd::unlinkat(&dir, FIFO, nix::unistd::UnlinkatFlags::NoRemoveDir);
    let stopped = || {
        let _ = remove_fifo();
        Errcode::usage("cannot start a container that has stopped")
    };
    loop {
        let mut pfd = [nix::poll::PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        let _ = nix::poll::poll(&mut pfd, nix::poll::PollTimeout::from(50u16));
        // The kernel reports a hang-up on a fifo only once a writer has had it open and
        // closed it, never before the first writer: a process slow to open its end (a
        // loaded machine, a stopped process) is waited for, not taken for a failure.
        let ev = pfd[0].revents().unwrap_or(PollFlags::empty());
        if ev.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
            let mut b = [0u8; 1];
            match nix::unistd::read(&*fd, &mut b) {
                Ok(1) => break,
                // The writer closed without its byte: it failed before the command (a
                // startContainer hook, a step after the wait), and said why on its stderr.
                Ok(_) => {
                    let _ = remove_fifo();
                    return Err(Errcode::setup(
                        "the container's process failed before its command ran (see its stderr)",
                    ));
                }
                Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(Errcode::sys(format!("read {}", fifo.display()), e)),
            }
        }
        if start_time(s.pid) != Some(s.pid_start) {
            // A short command may have run and ended between the poll and this look: its
            // byte is then still in the fifo, and the start happened.
            let mut b = [0u8; 1];
            if nix::unistd::read(&*fd, &mut b) == Ok(1) {
                break;
            }
            return Err(stopped());
        }
    }
    match remove_fifo() {
        // Removed with the whole directory by a delete meanwhile: the container started.
        Err(e) if e != nix::errno::Errno::ENOENT => {
            Err(Errcode::sys(format!("remove {}", fifo.display()), e))
        }
        _ => Ok(()),
    }
}

/// The state JSON hooks get on stdin.
fn state_json(dir: &Path, s: &State) -> Vec<u8> {
    state_json_as(s, status_of(dir, s))
}

/// The state JSON hooks read, with `status` as the caller knows it.
pub(crate) fn state_json_as(s: &State, status: Status) -> Vec<u8> {
    serde_json::to_vec(&state_as(s, status)).unwrap_or_default()
}

/// `kill [--all] ID SIGNAL`.
pub fn kill(root: &Path, id: &str, sig: Signal, all: bool) -> Result<()> {
    let l = Locked::open(root, id)?;
    let s = l.read()?;
    if status_of(l.dir(), &s) == Status::Stopped {
        return Err(Errcode::usage("container not running"));
    }
    if all && let Some(cg) = open_cgroup(&s) {
        return cg
            .kill_all(sig)
            .map_err(|e| e.context(format!("kill --all {id}")));
    }
    signal(&s, sig).map_err(|e| {
        if e == nix::errno::Errno::ESRCH {
            Errcode::usage("container not running")
        } else {
            Errcode::sys(format!("send {sig} to the container"), e)
        }
    })
}

/// Sends `sig` to the container's recorded process and never to one that took its pid
/// since: a pidfd pins the process first, then its start time is checked against the
/// record, and the signal goes through the pidfd. ESRCH: the recorded process is gone.
fn signal(s: &State, sig: Signal) -> nix::Result<()> {
    signal_pid(s.pid, s.pid_start, sig)
}

/// [`signal`] to the process `pid` that started at `start` (a `/proc/PID/stat` start time).
pub(crate) fn signal_pid(pid: i32, start: u64, sig: Signal) -> nix::Result<()> {
    use nix::errno::Errno;
    // SAFETY: pidfd_open with a pid and no flags; the result is a new fd we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        let e = Errno::last();
        if e != Errno::ENOSYS {
            return Err(e);
        }
        // Before Linux 5.3: the check and the signal are two steps.
        if start_time(pid) != Some(start) {
            return Err(Errno::ESRCH);
        }
        return nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
    }
    // SAFETY: the kernel just returned this fd to us.
    let pidfd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) };
    if start_time(pid) != Some(start) {
        return Err(Errno::ESRCH);
    }
    // SAFETY: pidfd_send_signal on a pidfd we own, with no siginfo and no flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig as libc::c_int,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 { Err(Errno::last()) } else { Ok(()) }
}

/// Waits until the recorded process is gone (exited or a zombie).
fn wait_gone(s: &State) -> Result<()> {
    let deadline = Instant::now() + WAIT_LIMIT;
    while start_time(s.pid) == Some(s.pid_start) {
        if Instant::now() >= deadline {
            return Err(Errcode::setup(format!(
                "the container's process {} did not die",
                s.pid
            )));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// `delete [--force] ID`: undoes everything create did. A created container is killed
/// as runc does; a running one only with `force`. An unknown id with `force` is no error.
pub fn delete(root: &Path, id: &str, force: bool) -> Result<()> {
    let l = match Locked::open(root, id) {
        Ok(l) => l,
        // Only a directory without a record (a create that died) is cleared this way; a
        // refusal (an untrusted record) stays one.
        Err(e) if force && e.is_missing() => {
            return remove_stale(root, id);
        }
        Err(e) => return Err(e),
    };
    let s = match l.read() {
        Ok(s) => s,
        Err(e) if force => {
            log::warn!("{e}; removing {}", l.dir().display());
            return l.remove();
        }
        Err(e) => return Err(e),
    };
    let st = status_of(l.dir(), &s);
    if let Some(owner) = read_owner(l.dir())
        && owner.alive()
    {
        return delete_owned(l, &s, st, owner, force);
    }
    match st {
        Status::Stopped => {}
        Status::Created | Status::Creating => {
            let _ = signal(&s, Signal::SIGKILL);
            // A frozen process does not die of the KILL until it is thawed: created
            // containers cannot be paused, but their cgroup can be frozen by hand (and a v1
            // freezer may be caught halfway, FREEZING). Thawing a thawed one changes nothing.
            // Without a freezer there is nothing to thaw.
            if let Some(cg) = open_cgroup(&s)
                && let Err(e) = cg.thaw()
            {
                log::debug!("{e}");
            }
            wait_gone(&s)?;
        }
        Status::Running | Status::Paused if force => {
            let _ = signal(&s, Signal::SIGKILL);
            if st == Status::Paused
                && let Some(cg) = open_cgroup(&s)
            {
                // A frozen process does not die of the KILL until it is thawed.
                cg.thaw()?;
            }
            wait_gone(&s)?;
        }
        _ => {
            return Err(Errcode::usage(format!(
                "cannot delete container {id} that is not stopped: {}",
                st.as_str()
            )));
        }
    }
    // The state the poststop hooks read, taken while the record is there.
    let hook_state = (!s.poststop.is_empty()).then(|| state_json(l.dir(), &s));
    let mut first = None;
    if let Err(e) = remove_cgroups(&s) {
        first.get_or_insert(e);
    }
    if let Err(e) = remove_mount_points(&s.rootfs, s.rootfs_id, &s.created_mount_points) {
        first.get_or_insert(e);
    }
    let poststop = s.poststop.clone();
    if let Err(e) = l.remove() {
        first.get_or_insert(e);
    }
    for h in &poststop {
        if let Err(e) = hooks::run("poststop", h, hook_state.as_deref().unwrap_or_default()) {
            log::warn!("{e}");
        }
    }
    first.map_or(Ok(()), Err)
}

/// `delete` of a `crabcan run` container whose crabcan still runs: only with `force` while
/// it runs; its init is killed, and the run's crabcan, which cleans up what it made, is
/// given the time to remove the record.
fn delete_owned(l: Locked, s: &State, st: Status, owner: Owner, force: bool) -> Result<()> {
    let id = &s.id;
    if st != Status::Stopped {
        if !force {
            return Err(Errcode::usage(format!(
                "cannot delete container {id} that is not stopped: {} (its crabcan run, \
                 process {}, removes it when its command ends; use --force to kill it)",
                st.as_str(),
                owner.pid
            )));
        }
        let _ = signal(s, Signal::SIGKILL);
        if st == Status::Paused
            && let Some(cg) = open_cgroup(s)
        {
            cg.thaw()?;
        }
    }
    let dir = l.dir().to_path_buf();
    // The run's crabcan takes the lock to remove the record.
    drop(l);
    // By its owner, not its path: once it is gone, another run may take the id.
    let ours = || read_owner(&dir) == Some(owner);
    let deadline = Instant::now() + WAIT_LIMIT;
    while ours() && owner.alive() {
        if Instant::now() >= deadline {
            return Err(Errcode::setup(format!(
                "container {id}: its crabcan run (process {}) did not remove it",
                owner.pid
            )));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    if !ours() {
        return Ok(());
    }
    // The run's crabcan died meanwhile (its guardian cleans up what it made): the record
    // goes the usual way.
    let root = dir.parent().unwrap_or(Path::new("/"));
    match Locked::open(root, id) {
        Ok(l) if ours() => {
            if let Err(e) = remove_cgroups(s) {
                log::warn!("{e}");
            }
            // Its guardian may be removing it at the same moment.
            l.remove()
                .or_else(|e| if dir.exists() { Err(e) } else { Ok(()) })
        }
        _ => Ok(()),
    }
}

/// Undoes what a create that was killed had made (its record in [`state::CREATING_FILE`]:
/// the cgroup, mount points) and removes its directory.
fn remove_stale(root: &Path, id: &str) -> Result<()> {
    let Some(l) = state::lock_stale(root, id) else {
        return Ok(());
    };
    if let Some(owner) = read_owner(l.dir())
        && owner.alive()
    {
        return Err(Errcode::usage(format!(
            "container {id} is being set up by its crabcan run (process {}); \
             delete it once it runs",
            owner.pid
        )));
    }
    let mut first = None;
    // The mount points: the record's (what was made) once it is written, else the
    // journal's (what was about to be made), in the root create opened.
    let journal = state::read_points(l.dir());
    let record = state::read_state_file(l.dir(), state::CREATING_FILE).ok();
    if let Some(s) = &record
        && let Some(cg) = open_cgroup(s)
        && let Err(e) = cg.remove()
    {
        first.get_or_insert(e);
    }
    let points = match (&record, &journal) {
        (Some(s), _) => Some((s.rootfs.as_path(), s.created_mount_points.as_slice())),
        (None, Some((_, rootfs, points))) => Some((rootfs.as_path(), points.as_slice())),
        (None, None) => None,
    };
    // The root's identity: the record's, else the journal's.
    let root_id = record
        .as_ref()
        .and_then(|s| s.rootfs_id)
        .or(journal.as_ref().map(|j| j.0));
    if let Some((rootfs, points)) = points
        && let Err(e) = remove_mount_points(rootfs, root_id, points)
    {
        first.get_or_insert(e);
    }
    if let Err(e) = l.remove() {
        first.get_or_insert(e);
    }
    first.map_or(Ok(()), Err)
}

/// Removes mount points create made in the root filesystem at `rootfs`, deepest first,
/// each resolved inside the root (a symlink the container put in its place cannot redirect
/// the removal) and only while it is still an empty directory or an empty file. With the
/// root's device and inode as create opened it (`root`), a directory found at `rootfs` that
/// is not that one is left alone (the path was given to another directory since: a bundle's
/// `rootfs` made a symlink to elsewhere on the host).
fn remove_mount_points(rootfs: &Path, root: Option<(u64, u64)>, points: &[PathBuf]) -> Result<()> {
    use nix::fcntl::OFlag;
    if points.is_empty() {
        return Ok(());
    }
    let fd = nix::fcntl::open(
        rootfs,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| Errcode::sys(format!("open {}", rootfs.display()), e))?;
    if let Some(id) = root {
        let st = nix::sys::stat::fstat(&fd)
            .map_err(|e| Errcode::sys(format!("inspect {}", rootfs.display()), e))?;
        if (st.st_dev, st.st_ino) != id {
            return Err(Errcode::setup(format!(
                "the mount points create made are left in place: {} is no longer the root \
                 directory create made them in",
                rootfs.display()
            )));
        }
    }
    remove_mount_points_in(fd.as_fd(), points)
}

/// Removes the mount points `points` (paths inside the root, made by crabcan) in the root
/// directory `root` as opened before, deepest first: only empty directories and empty
/// files, each resolved inside the root, never a symlink.
pub fn remove_mount_points_in(root: BorrowedFd<'_>, points: &[PathBuf]) -> Result<()> {
    use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
    let mut first = None;
    for p in points.iter().rev() {
        let rel = p.strip_prefix("/").unwrap_or(p);
        let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
            continue;
        };
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        let Ok(pfd) = nix::fcntl::openat2(root, parent, how) else {
            continue;
        };
        let Ok(st) = nix::sys::stat::fstatat(&pfd, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
        else {
            continue;
        };
        let flag = match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => nix::unistd::UnlinkatFlags::RemoveDir,
            libc::S_IFREG if st.st_size == 0 => nix::unistd::UnlinkatFlags::NoRemoveDir,
            _ => continue,
        };
        match nix::unistd::unlinkat(&pfd, name, flag) {
            Ok(()) | Err(nix::errno::Errno::ENOENT) | Err(nix::errno::Errno::ENOTEMPTY) => {}
            Err(e) => {
                first.get_or_insert(Errcode::sys(
                    format!("remove the mount point {} it created", p.display()),
                    e,
                ));
            }
        }
    }
    first.map_or(Ok(()), Err)
}

/// `run --detach ID --bundle B`: creates and starts the container; returns its process's
/// pid (the caller's child) once it runs its command. A failed start deletes the container.
pub fn run_detached(root: &Path, o: &CreateOptions) -> Result<nix::unistd::Pid> {
    let pid = create(root, o)?;
    if let Err(e) = start(root, &o.id) {
        let _ = delete(root, &o.id, true);
        return Err(e);
    }
    Ok(pid)
}

/// `run ID --bundle B`: create and start; unless detached, wait for the process, delete
/// the container and return its exit status (128+N when killed by signal N).
pub fn run(root: &Path, o: &CreateOptions, detach: bool) -> Result<i32> {
    let pid = run_detached(root, o)?;
    if detach {
        return Ok(0);
    }
    wait_and_delete(root, &o.id, pid)
}

/// Whether a foreground `run` of `o` gets a pty that crabcan relays itself: the bundle's
/// `process.terminal` is true and no console socket is given. A config that cannot be
/// read says no here; `create` then says why.
pub fn relays_own_pty(o: &CreateOptions) -> bool {
    #[derive(serde::Deserialize)]
    struct Config {
        process: Option<Process>,
    }
    #[derive(serde::Deserialize)]
    struct Process {
        #[serde(default)]
        terminal: bool,
    }
    if o.console_socket.is_some() {
        return false;
    }
    std::fs::read(o.bundle.join(crabcan_oci::CONFIG_FILE))
        .ok()
        .and_then(|text| serde_json::from_slice::<Config>(&text).ok())
        .and_then(|c| c.process)
        .is_some_and(|p| p.terminal)
}

/// A foreground `run` whose process has a terminal and no console socket is given (see
/// [`relays_own_pty`]): creates the container with a pty whose master comes back over a
/// socket pair, starts it, relays the pty to crabcan's stdio (raw mode on a terminal,
/// window size, signals; the terminal restored at the end), deletes the container and
/// returns the exit status (128+N when killed by signal N). The caller must be
/// single-threaded; the process stays its child.
pub fn run_relaying_pty(root: &Path, o: &CreateOptions) -> Result<i32> {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()
        .map_err(|e| Errcode::setup(format!("cannot create a socket pair for the pty: {e}")))?;
    // Blocked before the process exists, so no signal meant for it is lost: the relay
    // forwards what arrived meanwhile. The process clears its mask before its exec.
    crabcan_child::block_signals()?;
    let pid = create::create_with(root, o, Some(theirs))?;
    if let Err(e) = start(root, &o.id) {
        let _ = delete(root, &o.id, true);
        return Err(e);
    }
    let code = exec_tty::relay(pid, ours);
    if code.is_err() {
        // The relay gave up before the process ended: it must not outlive the container.
        let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(pid, None);
    }
    let _ = delete(root, &o.id, true).inspect_err(|e| log::warn!("{e}"));
    code
}

/// The foreground end of `run`: waits for the container's process `pid` (the caller's
/// child), forwarding the usual signals, deletes the container and returns the process's
/// exit status (128+N when killed by signal N).
pub fn wait_and_delete(root: &Path, id: &str, pid: nix::unistd::Pid) -> Result<i32> {
    let code = crabcan_child::wait_forwarding(pid);
    let _ = delete(root, id, true).inspect_err(|e| log::warn!("{e}"));
    code
}

/// A config's strings for `execve` (arguments, environment); a NUL inside one is the
/// config's error, naming `what`.
pub(crate) fn cstrings(v: &[String], what: &str) -> Result<Vec<std::ffi::CString>> {
    v.iter()
        .map(|s| {
            std::ffi::CString::new(s.as_bytes())
                .map_err(|_| Errcode::usage(format!("{what} contains a NUL byte")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A killed create's mount points are removed in the root create opened, and only while
    /// its path still leads to that directory; only empty directories and empty files go,
    /// never a symlink.
    #[test]
    fn a_killed_creates_points_go_only_from_its_own_root() {
        use std::os::unix::fs::MetadataExt;
        let base = std::env::temp_dir().join(format!("crabcan-points-root-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let (root, other) = (base.join("rootfs"), base.join("other"));
        for d in [&root, &other] {
            std::fs::create_dir_all(d.join("made/deeper")).unwrap();
            std::fs::write(d.join("file"), "").unwrap();
            std::fs::write(d.join("full"), "data").unwrap();
            std::os::unix::fs::symlink("/", d.join("link")).unwrap();
        }
        let points: Vec<PathBuf> = ["/made", "/made/deeper", "/file", "/full", "/link"]
            .iter()
            .map(PathBuf::from)
            .collect();
        let id = |d: &Path| {
            let m = std::fs::metadata(d).unwrap();
            (m.dev(), m.ino())
        };
        // The path now names another directory: nothing there is touched.
        let e = remove_mount_points(&other, Some(id(&root)), &points).unwrap_err();
        assert!(e.to_string().contains("no longer the root"), "{e}");
        assert!(other.join("made/deeper").is_dir() && other.join("file").exists());
        remove_mount_points(&root, Some(id(&root)), &points).unwrap();
        assert!(!root.join("made").exists() && !root.join("file").exists());
        assert!(root.join("full").exists(), "a file with data was removed");
        assert!(
            root.join("link").symlink_metadata().is_ok(),
            "a symlink was removed"
        );
        std::fs::remove_dir_all(&base).unwrap();
    }

    /// The signal reaches the recorded process, and never one whose start time differs
    /// from the record (a process that took a dead container's pid).
    #[test]
    fn a_signal_goes_only_to_the_recorded_process() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let start = start_time(pid).expect("the child's start time");
        let record = |pid_start| State {
            id: "c1".into(),
            pid,
            pid_start,
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            created: state::rfc3339(0, 0),
            owner_uid: 0,
            cgroup_path: None,
            cgroup_paths: vec![],
            created_mount_points: vec![],
            rootfs_id: None,
            annotations: Default::default(),
            poststart: vec![],
            poststop: vec![],
        };
        assert_eq!(
            signal(&record(start + 1), Signal::SIGKILL),
            Err(nix::errno::Errno::ESRCH)
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "another process was killed"
        );
        assert_eq!(signal(&record(start), Signal::SIGKILL), Ok(()));
        let st = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(st.signal(), Some(libc::SIGKILL));
        // Gone (reaped): the pid no longer leads to it.
        assert_eq!(
            signal(&record(start), Signal::SIGKILL),
            Err(nix::errno::Errno::ESRCH)
        );
        // No record names pid 0 (our process group) as a target.
        let mut zero = record(start);
        zero.pid = 0;
        assert!(signal(&zero, Signal::SIGKILL).is_err());
    }

    #[test]
    fn only_a_terminal_config_without_a_console_socket_relays_its_own_pty() {
        let dir = std::env::temp_dir().join(format!("crabcan-own-pty-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let o = CreateOptions {
            bundle: dir.clone(),
            ..Default::default()
        };
        let with = |text: &str, o: &CreateOptions| {
            std::fs::write(dir.join(crabcan_oci::CONFIG_FILE), text).unwrap();
            relays_own_pty(o)
        };
        assert!(with(
            r#"{"process": {"terminal": true, "args": ["sh"]}}"#,
            &o
        ));
        assert!(!with(r#"{"process": {"terminal": false}}"#, &o));
        assert!(!with(r#"{"process": {"args": ["sh"]}}"#, &o));
        assert!(!with(r#"{"ociVersion": "1.2.0"}"#, &o));
        // Malformed: the handover path's create says why.
        assert!(!with(r#"{"process": {"terminal": "yes"}}"#, &o));
        assert!(!with("{", &o));
        let socket = CreateOptions {
            console_socket: Some("/s".into()),
            ..o.clone()
        };
        assert!(!with(r#"{"process": {"terminal": true}}"#, &socket));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(!relays_own_pty(&o));
    }

    #[test]
    fn signals_by_name_or_number() {
        for s in ["TERM", "SIGTERM", "term", "15"] {
            assert_eq!(parse_signal(s).unwrap(), Signal::SIGTERM, "{s}");
        }
        assert_eq!(parse_signal("KILL").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("9").unwrap(), Signal::SIGKILL);
        for bad in ["", "SIG", "FOO", "0x9", "99", "-1"] {
            assert!(parse_signal(bad).is_err(), "{bad}");
        }
    }
}
