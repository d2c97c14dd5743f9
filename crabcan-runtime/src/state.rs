//! The state directory: one directory per container under the root, locked with `flock`,
//! holding `state.json` and the `exec.fifo` a created container waits on.

use crabcan_errors::{Errcode, Result, SysContext};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The state file's name in a container's directory.
pub const STATE_FILE: &str = "state.json";
/// What create has made so far (cgroup, mount points), before the state file exists: what
/// `delete --force` undoes after a create that was killed.
pub const CREATING_FILE: &str = "creating.json";
/// The mount points create is about to make in the root, each announced before it exists:
/// an entry `DEV:INO:ROOTFS` naming the root (as create opened it), then one per path inside
/// it, every entry NUL-terminated. Only appended to (one write per mount point, never a
/// rewrite, which on ext4 would start the file's writeback each time); read only when
/// create was killed before its [`CREATING_FILE`], which from then on holds what was made.
pub const POINTS_FILE: &str = "creating.points";
/// The fifo a created container blocks on until `start`.
pub const FIFO: &str = "exec.fifo";
/// Longest container id accepted.
pub const MAX_ID_LEN: usize = 1024;

/// A hook as recorded for the commands after `create` (poststart, poststop).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookRecord {
    /// Executable path.
    pub path: PathBuf,
    /// argv.
    pub args: Vec<String>,
    /// Environment.
    pub env: Vec<String>,
    /// Seconds.
    pub timeout: Option<u64>,
}

impl From<&crabcan_oci::Hook> for HookRecord {
    fn from(h: &crabcan_oci::Hook) -> HookRecord {
        HookRecord {
            path: h.path.clone(),
            args: h.args.clone(),
            env: h.env.clone(),
            timeout: h.timeout.map(|t| t.as_secs()),
        }
    }
}

/// What crabcan records about a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The container's id.
    pub id: String,
    /// The container process's pid on the host.
    pub pid: i32,
    /// Its start time (field 22 of `/proc/PID/stat`), so a reused pid is not taken for it.
    pub pid_start: u64,
    /// The bundle directory.
    pub bundle: PathBuf,
    /// The root filesystem on the host.
    pub rootfs: PathBuf,
    /// Creation time, RFC 3339.
    pub created: String,
    /// uid of the caller that created it.
    pub owner_uid: u32,
    /// Its cgroup path (`linux.cgroupsPath` or the default), when it has a cgroup.
    pub cgroup_path: Option<String>,
    /// The cgroup directories made for it.
    pub cgroup_paths: Vec<PathBuf>,
    /// Mount points created in the root filesystem, to remove on delete.
    pub created_mount_points: Vec<PathBuf>,
    /// The root filesystem's device and inode as create opened it: delete removes the
    /// mount points only while `rootfs` still leads to that directory. Absent in records
    /// of a create that made no mount point (or of an older crabcan).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootfs_id: Option<(u64, u64)>,
    /// The config's annotations.
    pub annotations: BTreeMap<String, String>,
    /// Hooks run after start.
    pub poststart: Vec<HookRecord>,
    /// Hooks run after delete.
    pub poststop: Vec<HookRecord>,
}

/// Status of a container, from its live process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Being created (no state file yet).
    Creating,
    /// Set up, waiting for start.
    Created,
    /// Its command runs.
    Running,
    /// Frozen.
    Paused,
    /// Its process is gone.
    Stopped,
}

impl Status {
    /// The word runc uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

/// runc's `state` output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OciState {
    /// Spec version.
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    /// Container id.
    pub id: String,
    /// Status word.
    pub status: Status,
    /// Pid on the host (0 once stopped).
    pub pid: i32,
    /// Bundle directory.
    pub bundle: PathBuf,
    /// Root filesystem.
    pub rootfs: PathBuf,
    /// Creation time.
    pub created: String,
    /// Owner's user name.
    pub owner: String,
    /// Annotations.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Refuses ids that could leave the root or confuse the state directory.
pub fn validate_id(id: &str) -> Result<()> {
    let bad = |why: &str| Errcode::usage(format!("invalid container id {id:?}: {why}"));
    if id.is_empty() {
        return Err(bad("it is empty"));
    }
    if id.len() > MAX_ID_LEN {
        return Err(bad(&format!("longer than {MAX_ID_LEN} bytes")));
    }
    if id == "." || id == ".." {
        return Err(bad("not a name"));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'+'))
    {
        return Err(bad("only letters, digits and _ - . + are allowed"));
    }
    Ok(())
}

/// The default root: `/run/crabcan` for root, else `$XDG_RUNTIME_DIR/crabcan`.
pub fn default_root(euid: u32, xdg_runtime_dir: Option<&str>) -> PathBuf {
    match xdg_runtime_dir {
        Some(x) if euid != 0 && !x.is_empty() => Path::new(x).join("crabcan"),
        _ => PathBuf::from("/run/crabcan"),
    }
}

pub use crabcan_child::{parse_stat, start_time};

/// A container's directory, locked exclusively for as long as this lives.
pub struct Locked {
    dir: PathBuf,
    _fd: OwnedFd,
}

fn lock(fd: &OwnedFd, what: &Path) -> Result<()> {
    loop {
        // SAFETY: flock on a descriptor we own.
        let r = unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX) };
        if r == 0 {
            return Ok(());
        }
        let e = nix::errno::Errno::last();
        if e != nix::errno::Errno::EINTR {
            return Err(Errcode::sys(format!("lock {}", what.display()), e));
        }
    }
}

/// How many times [`Locked::open`] opens a container's directory again when the one it
/// locked was replaced while it waited.
const REOPENS: usize = 8;

/// Whether the path `dir` (not followed if a symlink) still names the directory `fd` holds.
fn same_dir(fd: &OwnedFd, dir: &Path) -> bool {
    match (nix::sys::stat::fstat(fd), nix::sys::stat::lstat(dir)) {
        (Ok(a), Ok(b)) => (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino),
        _ => false,
    }
}

fn open_dir(dir: &Path) -> nix::Result<OwnedFd> {
    nix::fcntl::open(
        dir,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
}

/// Makes the state directory `dir` and its missing parents (with `mode`) where another
/// crabcan removes it once empty (a run as root, root's default state root).
/// `Ok(false)`: they vanished half-way, try again; an error of kind `NotADirectory`:
/// something that is no directory (a file, a dangling symlink) stands there, which no
/// release removes.
fn make_state_dirs(dir: &Path, mode: u32) -> std::io::Result<bool> {
    use std::io::ErrorKind;
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
    {
        Ok(()) => Ok(true),
        // Gone again half-way (a parent).
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        // Seen, then gone again; or something that is no directory.
        Err(e) if e.kind() == ErrorKind::AlreadyExists => match dir.symlink_metadata() {
            Ok(m) if m.is_dir() => Ok(true),
            Err(m) if m.kind() == ErrorKind::NotFound => Ok(false),
            _ => Err(ErrorKind::NotADirectory.into()),
        },
        Err(e) => Err(e),
    }
}

/// How many times the state directories are made again when they vanish underneath (a
/// concurrent release removing them while empty) before giving up.
const DIR_RACES: u32 = 1000;

/// A caller acts only on records it owns, in a state root it owns: a record another user
/// can write would let that user choose what the caller's `exec` runs (its user,
/// capabilities, namespaces, environment) and what `delete` kills and removes. Root
/// trusts only root's; an ordinary user only its own. Checked on the opened directory,
/// and on the root, which must not be writable by others (they could swap the directory).
fn check_owned(root: &Path, fd: &OwnedFd, dir: &Path) -> Result<()> {
    let me = nix::unistd::geteuid().as_raw();
    let st = nix::sys::stat::fstat(fd).sys_ctx(|| format!("stat {}", dir.display()))?;
    if st.st_uid != me {
        return Err(Errcode::usage(format!(
            "{}: owned by uid {}, not by this caller (uid {me}): its records are not to be \
             trusted",
            dir.display(),
            st.st_uid
        )));
    }
    check_root(root, me)
}

/// The state root must be the caller's or root's, and writable by no one else.
fn check_root(root: &Path, me: u32) -> Result<()> {
    let r = nix::sys::stat::stat(root).sys_ctx(|| format!("stat {}", root.display()))?;
    if (r.st_uid != me && r.st_uid != 0) || r.st_mode & 0o022 != 0 {
        return Err(Errcode::usage(format!(
            "the state root {} (uid {}, mode {:o}) is writable by others or owned by \
             another user: its records are not to be trusted",
            root.display(),
            r.st_uid,
            r.st_mode & 0o7777
        )));
    }
    Ok(())
}

impl Locked {
    /// Makes the directory of a new container and locks it; an existing one is refused.
    pub fn create(root: &Path, id: &str) -> Result<Locked> {
        Locked::create_with(root, id, &[])
    }

    /// Makes the directory of a new container with `files` already in it, and locks it; an
    /// existing one is refused ("container with id ID already exists"). The directory is
    /// made and filled under a name no id can have (`#new#PID#N#ID`), then renamed into
    /// place without replacing: a maker killed half-way leaves no record under the id that
    /// would block it (only a `#new#` directory, which a later sweep removes), and no one
    /// ever sees the record without its first files.
    pub fn create_with(root: &Path, id: &str, files: &[(&str, &[u8])]) -> Result<Locked> {
        validate_id(id)?;
        // The root goes once empty (a run as root removes root's default one): made again
        // when it vanishes half-way.
        let make_root = || {
            let cannot = |e: &dyn std::fmt::Display| {
                Errcode::setup(format!(
                    "cannot create the state root {}: {e}",
                    root.display()
                ))
            };
            for _ in 0..DIR_RACES {
                // Owner only, whatever the umask (see check_owned).
                if make_state_dirs(root, 0o700).map_err(|e| cannot(&e))? {
                    return Ok(());
                }
            }
            Err(cannot(&"it vanished again each time it was made"))
        };
        make_root()?;
        let dir = root.join(id);
        let exists = || Errcode::usage(format!("container with id {id} already exists"));
        // The common refusal without making anything (the rename below decides the race).
        if dir.symlink_metadata().is_ok() {
            return Err(exists());
        }
        static MADE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let staging = root.join(format!("{NEW}{}#{n}#{id}", std::process::id()));
        let cannot = |e: &dyn std::fmt::Display| {
            Errcode::setup(format!(
                "cannot create the state directory {}: {e}",
                dir.display()
            ))
        };
        // Owner only, whatever the umask: what is in it (the records, the config copy) is
        // crabcan's, which no other user reads or writes.
        // The root made again when it went between its mkdir and this one.
        let mut vanished = 0;
        loop {
            match std::fs::DirBuilder::new().mode(0o700).create(&staging) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && vanished < DIR_RACES => {
                    vanished += 1;
                    make_root()?;
                }
                r => {
                    r.and_then(|()| {
                        std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o700))
                    })
                    .map_err(|e| cannot(&e))?;
                    break;
                }
            }
        }
        let staged = (|| {
            let fd = open_dir(&staging).sys_ctx(|| format!("open {}", staging.display()))?;
            check_owned(root, &fd, &staging)?;
            lock(&fd, &staging)?;
            let l = Locked {
                dir: staging.clone(),
                _fd: fd,
            };
            for (name, text) in files {
                l.write_file(name, text).map_err(|e| {
                    Errcode::setup(format!(
                        "cannot write {}: {e}",
                        staging.join(name).display()
                    ))
                })?;
            }
            rename_noreplace(&staging, &dir).map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    exists()
                } else {
                    cannot(&e)
                }
            })?;
            Ok(l._fd)
        })();
        match staged {
            Ok(fd) => Ok(Locked { dir, _fd: fd }),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&staging);
                Err(e)
            }
        }
    }

    /// Locks the directory of an existing container.
    pub fn open(root: &Path, id: &str) -> Result<Locked> {
        validate_id(id)?;
        let dir = root.join(id);
        // A container deleted while we waited for its lock may have been made again under
        // the same id: the lock taken is then on the old, removed directory, and the path
        // leads to a new one whose lock we do not hold. Open and lock again (a bounded
        // number of times: each retry means another delete and create of the same id).
        for _ in 0..REOPENS {
            let fd = open_dir(&dir).map_err(|_| not_exist())?;
            check_owned(root, &fd, &dir)?;
            lock(&fd, &dir)?;
            if !same_dir(&fd, &dir) {
                continue;
            }
            // Deleted while we waited for the lock.
            if !dir.join(STATE_FILE).exists() {
                return Err(not_exist());
            }
            return Ok(Locked { dir, _fd: fd });
        }
        Err(not_exist())
    }

    /// Locks the directory of `id`, with or without a state file (a container being set
    /// up); "container does not exist" when there is no such directory.
    pub fn open_any(root: &Path, id: &str) -> Result<Locked> {
        validate_id(id)?;
        let dir = root.join(id);
        let fd = open_dir(&dir).map_err(|_| not_exist())?;
        check_owned(root, &fd, &dir)?;
        lock(&fd, &dir)?;
        // Removed while we waited for the lock.
        if !dir.exists() {
            return Err(not_exist());
        }
        Ok(Locked { dir, _fd: fd })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads the state file.
    pub fn read(&self) -> Result<State> {
        read_state(&self.dir)
    }

    /// Writes the state file atomically (a new file renamed over the old).
    pub fn write(&self, s: &State) -> Result<()> {
        self.write_as(s, STATE_FILE)
    }

    /// Starts the journal of the mount points create is about to make ([`POINTS_FILE`]) in
    /// the root directory `root`, found at `rootfs`.
    pub fn points_journal(&self, root: (u64, u64), rootfs: &Path) -> Result<PointsJournal> {
        let path = self.dir.join(POINTS_FILE);
        let cannot = |e: &dyn std::fmt::Display| {
            Errcode::setup(format!(
                "cannot record the mount points in {}: {e}",
                path.display()
            ))
        };
        let file = std::fs::OpenOptions::new()
            .append(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| cannot(&e))?;
        let mut journal = PointsJournal { file, path };
        let mut head = format!("{}:{}:", root.0, root.1).into_bytes();
        head.extend_from_slice(rootfs.as_os_str().as_encoded_bytes());
        journal.append_entry(&head)?;
        Ok(journal)
    }

    /// Records what create has made so far (`creating.json`).
    pub fn write_creating(&self, s: &State) -> Result<()> {
        self.write_as(s, CREATING_FILE)
    }

    fn write_as(&self, s: &State, name: &str) -> Result<()> {
        let text = serde_json::to_vec(s)
            .map_err(|e| Errcode::setup(format!("cannot encode the state: {e}")))?;
        self.write_file(name, &text).map_err(|e| {
            Errcode::setup(format!(
                "cannot write the state in {}: {e}",
                self.dir.display()
            ))
        })
    }

    /// Writes `name` in the directory atomically, readable and writable by the owner only.
    pub fn write_file(&self, name: &str, text: &[u8]) -> std::io::Result<()> {
        // The lock is ours, so a leftover temporary is from a create or delete that died.
        replace_file(
            &self.dir.join(format!(".{name}.tmp")),
            &self.dir.join(name),
            0o600,
            text,
        )
    }

    /// Removes the directory and everything in it; then what earlier removals that died
    /// half-way left in the root (a removal, not a create: no cost on the start path).
    pub fn remove(self) -> Result<()> {
        remove_at_once(&self.dir)
            .map_err(|e| Errcode::setup(format!("cannot remove {}: {e}", self.dir.display())))?;
        if let Some(root) = self.dir.parent() {
            sweep_gone(root);
        }
        Ok(())
    }
}

/// Removes a container's directory so that its id is free at once for every reader: it is
/// renamed to a name no id can have (`#` is not allowed in one), then emptied.
pub fn remove_at_once(dir: &Path) -> std::io::Result<()> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let gone = dir.with_file_name(format!("{GONE}{}#{name}", std::process::id()));
    match std::fs::rename(dir, &gone) {
        Ok(()) => std::fs::remove_dir_all(&gone),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(_) => std::fs::remove_dir_all(dir),
    }
}

/// How the name of a directory being removed starts: `#gone#PID#ID`, PID the remover's.
const GONE: &str = "#gone#";

/// How the name of a directory being made starts: `#new#PID#N#ID`, PID the maker's.
const NEW: &str = "#new#";

/// `rename(from, to)` that fails with EEXIST instead of replacing `to` (renameat2, called
/// directly: not every C library wraps it).
pub(crate) fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    let from = std::ffi::CString::new(from.as_os_str().as_encoded_bytes())?;
    let to = std::ffi::CString::new(to.as_os_str().as_encoded_bytes())?;
    // SAFETY: renameat2 with two NUL-terminated paths relative to the cwd, no replace.
    let r = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Removes what removals that died half-way left in `root` (see [`remove_at_once`]):
/// `#gone#PID#ID` directories whose remover PID no longer exists. One whose remover lives
/// is left to it; nothing is touched in a root others may write, nor what is not the
/// caller's (a directory moved in there by someone else). Failures are not the caller's
/// concern: what is left is tried again next time.
pub fn sweep_gone(root: &Path) {
    if check_root(root, nix::unistd::geteuid().as_raw()).is_ok() {
        sweep_trusted(root);
    }
}

fn sweep_trusted(root: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    let me = nix::unistd::geteuid().as_raw();
    for e in entries.flatten() {
        let Some(pid) = gone_pid(&e.file_name().to_string_lossy()) else {
            continue;
        };
        // Not following a symlink: only a real directory of the caller's.
        let Ok(m) = e.metadata() else {
            continue;
        };
        if !m.is_dir() || m.uid() != me {
            continue;
        }
        // Only ESRCH says the remover is gone; EPERM means it lives (as another user).
        if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
            == Err(nix::errno::Errno::ESRCH)
            && let Err(err) = std::fs::remove_dir_all(e.path())
        {
            log::debug!("cannot remove {}: {err}", e.path().display());
        }
    }
}

/// The remover's or maker's pid in a `#gone#PID#ID` or `#new#PID#N#ID` name; `None` for
/// any other name.
fn gone_pid(name: &str) -> Option<i32> {
    let rest = name.strip_prefix(GONE).or_else(|| name.strip_prefix(NEW))?;
    let (pid, _id) = rest.split_once('#')?;
    // Digits only: "+5" or "-1" would parse, and kill(-1) means every process.
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok().filter(|&p: &i32| p > 0)
}

/// Locks the directory of a container whose create died before recording it (no state
/// file, nobody holding its lock); `None` when there is none, or it is alive.
pub fn lock_stale(root: &Path, id: &str) -> Option<Locked> {
    let dir = root.join(id);
    let fd = open_dir(&dir).ok()?;
    check_owned(root, &fd, &dir).ok()?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return None;
    }
    if dir.join(STATE_FILE).exists() {
        return None;
    }
    Some(Locked { dir, _fd: fd })
}

/// runc's words for an unknown id, which engines match.
pub fn not_exist() -> Errcode {
    Errcode::missing("container does not exist")
}

/// Reads `dir/state.json`.
pub fn read_state(dir: &Path) -> Result<State> {
    read_state_file(dir, STATE_FILE)
}

/// Reads a state file of `dir`.
pub fn read_state_file(dir: &Path, name: &str) -> Result<State> {
    let text = std::fs::read(dir.join(name)).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            not_exist()
        } else {
            Errcode::setup(format!("cannot read the state in {}: {e}", dir.display()))
        }
    })?;
    serde_json::from_slice(&text)
        .map_err(|e| Errcode::setup(format!("corrupt state in {}: {e}", dir.display())))
}

/// The status of a recorded container.
pub fn status(dir: &Path, s: &State, frozen: impl Fn() -> bool) -> Status {
    match start_time(s.pid) {
        Some(t) if t == s.pid_start => {
            if dir.join(FIFO).exists() {
                Status::Created
            } else if frozen() {
                Status::Paused
            } else {
                Status::Running
            }
        }
        _ => Status::Stopped,
    }
}

/// Replaces `path` with a file of `text` and `mode`, written at `tmp` first and renamed, so
/// that a reader sees the old file or the whole new one. Never through a name someone placed
/// at `tmp`: a symlink there would have root write (and truncate) whatever it points to; a
/// leftover is removed (the link itself, not its target) and the file must be created anew.
pub(crate) fn replace_file(tmp: &Path, path: &Path, mode: u32, text: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    match std::fs::remove_file(tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(tmp)?;
    // No fsync: the rename alone keeps readers from a half-written file, and the state
    // describes processes that do not outlive the machine anyway (runc does not sync
    // either). On a disk-backed root each fsync cost 1-3 ms, four per create.
    f.write_all(text)
        .and_then(|()| std::fs::rename(tmp, path))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(tmp);
        })
}

/// The journal of the mount points create is about to make ([`POINTS_FILE`]).
pub struct PointsJournal {
    file: std::fs::File,
    path: PathBuf,
}

impl PointsJournal {
    /// Records `point` (a path inside the root), before it is made.
    pub fn append(&mut self, point: &Path) -> Result<()> {
        self.append_entry(point.as_os_str().as_encoded_bytes())
    }

    fn append_entry(&mut self, entry: &[u8]) -> Result<()> {
        use std::io::Write;
        if entry.contains(&0) {
            return Err(Errcode::setup("a recorded path holds a NUL byte"));
        }
        let mut line = Vec::with_capacity(entry.len() + 1);
        line.extend_from_slice(entry);
        line.push(0);
        // One write: a kill cannot leave half an entry that looks whole (the reader drops
        // an entry without its NUL).
        self.file.write_all(&line).map_err(|e| {
            Errcode::setup(format!(
                "cannot record the mount points in {}: {e}",
                self.path.display()
            ))
        })
    }
}

/// What a journal of mount points ([`POINTS_FILE`]) in `dir` holds: the root (its device
/// and inode as create opened it, and its path) and the paths announced in it, in order.
/// `None` when there is none, or it does not begin with a root.
pub fn read_points(dir: &Path) -> Option<((u64, u64), PathBuf, Vec<PathBuf>)> {
    use std::os::unix::ffi::OsStrExt;
    let text = std::fs::read(dir.join(POINTS_FILE)).ok()?;
    // Every whole entry; a last one without its NUL was cut short by a kill.
    let mut entries: Vec<&[u8]> = text.split(|&b| b == 0).collect();
    entries.pop();
    let (head, points) = entries.split_first()?;
    let mut parts = head.splitn(3, |&b| b == b':');
    let mut num = || -> Option<u64> { std::str::from_utf8(parts.next()?).ok()?.parse().ok() };
    let id = (num()?, num()?);
    let rootfs = PathBuf::from(std::ffi::OsStr::from_bytes(parts.next()?));
    let points = points
        .iter()
        .map(|p| PathBuf::from(std::ffi::OsStr::from_bytes(p)))
        .collect();
    Some((id, rootfs, points))
}

/// RFC 3339 UTC time with nanoseconds, as runc prints `created`.
pub fn now_rfc3339() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(d.as_secs() as i64, d.subsec_nanos())
}

/// Formats a Unix time as RFC 3339 UTC.
pub fn rfc3339(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// The user name of `uid` from /etc/passwd, or the number.
pub fn user_name(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                let mut f = l.split(':');
                let name = f.next()?;
                let id: u32 = f.nth(1)?.parse().ok()?;
                (id == uid).then(|| name.to_string())
            })
        })
        .unwrap_or_else(|| uid.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> State {
        State {
            id: "c1".into(),
            pid: 42,
            pid_start: 123_456,
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            created: rfc3339(0, 5),
            owner_uid: 0,
            cgroup_path: Some("/default/c1".into()),
            cgroup_paths: vec!["/sys/fs/cgroup/pids/default/c1".into()],
            created_mount_points: vec!["/b/rootfs/proc".into()],
            rootfs_id: Some((1, 2)),
            annotations: [("a".to_string(), "b".to_string())].into(),
            poststart: vec![],
            poststop: vec![HookRecord {
                path: "/bin/true".into(),
                args: vec!["true".into()],
                env: vec![],
                timeout: Some(3),
            }],
        }
    }

    #[test]
    fn state_round_trips() {
        let s = sample();
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<State>(&text).unwrap(), s);
    }

    #[test]
    fn ids_that_could_leave_the_root_are_refused() {
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "../x",
            "a\0b",
            "é",
            &"x".repeat(MAX_ID_LEN + 1),
        ] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
        for good in ["c1", "abc-DEF_1.2+3", "..a", &"x".repeat(MAX_ID_LEN)] {
            validate_id(good).unwrap();
        }
    }

    #[test]
    fn stat_start_time_is_field_22() {
        let line = "1234 (a b) c)) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 987654 20\n";
        assert_eq!(parse_stat(line), Some(987_654));
        let zombie = line.replace(") S ", ") Z ");
        assert_eq!(parse_stat(&zombie), None);
        assert_eq!(parse_stat("garbage"), None);
        let me = start_time(std::process::id() as i32).unwrap();
        assert!(me > 0);
    }

    #[test]
    fn a_reused_pid_is_stopped() {
        let dir = std::env::temp_dir();
        let mut s = sample();
        s.pid = std::process::id() as i32;
        s.pid_start = start_time(s.pid).unwrap();
        assert_ne!(status(&dir.join("none"), &s, || false), Status::Stopped);
        s.pid_start += 1;
        assert_eq!(status(&dir, &s, || false), Status::Stopped);
    }

    /// A state root that is a file, or a dangling symlink, is no race with a release: the
    /// record fails, naming the root.
    #[test]
    fn a_state_root_that_is_no_directory_fails_clearly() {
        let base =
            std::env::temp_dir().join(format!("crabcan-state-notdir-{}", std::process::id()));
        std::fs::create_dir_all(&base).unwrap();
        let file = base.join("file");
        std::fs::write(&file, "").unwrap();
        let link = base.join("link");
        std::os::unix::fs::symlink(base.join("missing"), &link).unwrap();
        let results = [Locked::create(&file, "c1"), Locked::create(&link, "c1")];
        let made = base.join("missing").exists();
        let _ = std::fs::remove_dir_all(&base);
        for r in results {
            let e = r.err().expect("a record under no directory").to_string();
            assert!(e.contains("cannot create the state root"), "{e}");
        }
        assert!(!made);
    }

    /// A run as root removes the default state root once empty; a record made meanwhile
    /// makes it again instead of failing ("cannot create the state directory …: No such file").
    #[test]
    fn a_record_is_made_while_the_empty_root_comes_and_goes() {
        let base = std::env::temp_dir().join(format!("crabcan-state-race-{}", std::process::id()));
        let root = base.join("root");
        std::fs::create_dir_all(&base).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let remover = {
            let (root, stop) = (root.clone(), stop.clone());
            std::thread::spawn(move || {
                // As often as starts and ends of runs could come, and more.
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = std::fs::remove_dir(&root);
                    std::thread::sleep(std::time::Duration::from_micros(20));
                }
            })
        };
        let mut failed = None;
        for i in 0..2000 {
            match Locked::create(&root, &format!("c{i}")) {
                Ok(l) => {
                    let dir = l.dir().to_path_buf();
                    drop(l);
                    let _ = std::fs::remove_dir_all(dir);
                }
                Err(e) => {
                    failed = Some(e.to_string());
                    break;
                }
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        remover.join().unwrap();
        let _ = std::fs::remove_dir_all(&base);
        assert_eq!(failed, None);
    }

    /// The journal of mount points gives back the root and every whole entry; an entry a
    /// kill cut short (no NUL yet) is dropped, never read as another path.
    #[test]
    fn the_points_journal_reads_back_its_whole_entries() {
        let root = std::env::temp_dir().join(format!("crabcan-points-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let l = Locked::create(&root, "c1").unwrap();
        assert!(read_points(l.dir()).is_none());
        let mut j = l.points_journal((7, 99), Path::new("/b/root:fs")).unwrap();
        j.append(Path::new("/a")).unwrap();
        j.append(Path::new("/a/b c")).unwrap();
        assert_eq!(
            read_points(l.dir()),
            Some((
                (7, 99),
                PathBuf::from("/b/root:fs"),
                vec![PathBuf::from("/a"), PathBuf::from("/a/b c")]
            ))
        );
        use std::io::Write;
        j.file.write_all(b"/a/b c/d").unwrap();
        assert_eq!(
            read_points(l.dir()).unwrap().2.len(),
            2,
            "a cut entry was read"
        );
        assert!(j.append(Path::new("/x\0y")).is_err());
        assert!(
            l.points_journal((7, 99), Path::new("/b")).is_err(),
            "a second journal replaced the first"
        );
        l.remove().unwrap();
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn the_state_directory_and_its_files_are_the_owners_only() {
        let root = std::env::temp_dir().join(format!("crabcan-state-mode-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        // A permissive umask must not widen them.
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::empty());
        let l = Locked::create(&root, "c1");
        nix::sys::stat::umask(old);
        let l = l.unwrap();
        l.write_creating(&sample()).unwrap();
        l.write(&sample()).unwrap();
        l.write_file("config.json", b"{}").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(l.dir()), 0o700);
        for f in [STATE_FILE, CREATING_FILE, "config.json"] {
            assert_eq!(mode(&l.dir().join(f)), 0o600, "{f}");
        }
        l.remove().unwrap();
        // The id is free and nothing of it is left, not even under its removal name.
        assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn records_others_could_write_are_refused() {
        let root = std::env::temp_dir().join(format!("crabcan-state-trust-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        // A state root others may write: they could put any directory in place of a record.
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = Locked::create(&root, "c1")
            .err()
            .expect("created in a world-writable root");
        assert!(e.to_string().contains("not to be trusted"), "{e}");
        assert!(!root.join("c1").exists());
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        let l = Locked::create(&root, "c1").unwrap();
        l.write(&sample()).unwrap();
        drop(l);
        // A record owned by another user.
        let other = nix::unistd::Uid::from_raw(nix::unistd::geteuid().as_raw() ^ 1);
        if nix::unistd::chown(&root.join("c1"), Some(other), None).is_ok() {
            let e = Locked::open(&root, "c1")
                .err()
                .expect("opened another user's record");
            assert!(e.to_string().contains("not to be trusted"), "{e}");
        }
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// A pid no process has: that of a child already reaped.
    fn dead_pid() -> i32 {
        let mut c = std::process::Command::new("true").spawn().unwrap();
        c.wait().unwrap();
        let pid = c.id() as i32;
        assert_eq!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
            Err(nix::errno::Errno::ESRCH),
            "pid {pid} was reused at once"
        );
        pid
    }

    /// A directory as a removal leaves it, with something in it.
    fn left_behind(root: &Path, pid: i32, id: &str) -> PathBuf {
        let d = root.join(format!("#gone#{pid}#{id}"));
        std::fs::create_dir_all(d.join("sub")).unwrap();
        std::fs::write(d.join("sub").join(STATE_FILE), b"{}").unwrap();
        d
    }

    /// A record appears with its first files or not at all; a refused create leaves nothing,
    /// and what a maker killed half-way leaves is swept, not taken for the id.
    #[test]
    fn a_record_is_published_whole_and_a_dead_makers_staging_is_swept() {
        let root =
            std::env::temp_dir().join(format!("crabcan-state-publish-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let entries = || {
            let mut v: Vec<String> = std::fs::read_dir(&root)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        let l = Locked::create_with(&root, "c1", &[("owner.json", b"{\"pid\":1}")]).unwrap();
        assert_eq!(
            std::fs::read(root.join("c1").join("owner.json")).unwrap(),
            b"{\"pid\":1}"
        );
        let Err(e) = Locked::create_with(&root, "c1", &[("owner.json", b"{}")]) else {
            panic!("an existing id was taken again");
        };
        assert!(e.to_string().contains("already exists"), "{e}");
        assert_eq!(entries(), ["c1"], "a refused create left something");
        // A maker killed between its mkdir and its rename: the id stays free.
        let staged = root.join(format!("#new#{}#0#c2", dead_pid()));
        std::fs::create_dir_all(&staged).unwrap();
        let l2 = Locked::create(&root, "c2").unwrap();
        assert!(staged.exists(), "a create swept");
        l2.remove().unwrap();
        assert!(!staged.exists(), "a dead maker's staging directory is left");
        l.remove().unwrap();
        assert!(entries().is_empty(), "{:?}", entries());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn only_removal_names_give_a_remover() {
        assert_eq!(gone_pid("#gone#42#c1"), Some(42));
        assert_eq!(gone_pid("#gone#42#"), Some(42));
        assert_eq!(gone_pid("#new#42#0#c1"), Some(42));
        for other in [
            "c1",
            "#gone#",
            "#gone#42",
            "#gone##c1",
            "#gone#-1#c1",
            "#gone#+5#c1",
            "#gone#0#c1",
            "#gone#x#c1",
            "#gone#99999999999#c1",
            "gone#42#c1",
            "#new#",
            "#new#-1#0#c1",
        ] {
            assert_eq!(gone_pid(other), None, "{other}");
        }
    }

    /// An `open` that waited for the lock of a container deleted and made again under the
    /// same id meanwhile ends up holding the new directory's lock, not the removed one's.
    #[test]
    fn an_open_that_waited_through_a_delete_and_create_locks_the_new_directory() {
        let root =
            std::env::temp_dir().join(format!("crabcan-state-reopen-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let first = Locked::create(&root, "c1").unwrap();
        std::fs::write(first.dir().join(STATE_FILE), b"{}").unwrap();
        let r = root.clone();
        let waiter = std::thread::spawn(move || Locked::open(&r, "c1"));
        // Time for the waiter to open the first directory and block on its lock.
        std::thread::sleep(std::time::Duration::from_millis(300));
        remove_at_once(first.dir()).unwrap();
        let second = Locked::create(&root, "c1").unwrap();
        std::fs::write(second.dir().join(STATE_FILE), b"{}").unwrap();
        let new_ino = nix::sys::stat::lstat(&root.join("c1")).unwrap().st_ino;
        // The first lock goes: the waiter wakes on a removed directory.
        drop(first);
        std::thread::sleep(std::time::Duration::from_millis(100));
        drop(second);
        let got = waiter.join().unwrap().expect("the new container is found");
        let held = nix::sys::stat::fstat(&got._fd).unwrap();
        drop(got);
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(
            held.st_ino, new_ino,
            "the lock held is the removed directory's"
        );
    }

    #[test]
    fn a_removal_that_died_is_swept_by_list_and_create() {
        let root = std::env::temp_dir().join(format!("crabcan-state-sweep-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700)).unwrap();
        let dead = dead_pid();
        let me = std::process::id() as i32;
        let swept = left_behind(&root, dead, "c1");
        let live = left_behind(&root, me, "c2");
        // A symlink under a removal name: neither it nor what it points to is followed.
        let outside = root.join("outside");
        std::fs::create_dir_all(outside.join("keep")).unwrap();
        let link = root.join(format!("#gone#{dead}#c3"));
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        // Another user's directory (moved in by them) is not the caller's to remove.
        let theirs = left_behind(&root, dead, "c4");
        let other = nix::unistd::Uid::from_raw(nix::unistd::geteuid().as_raw() ^ 1);
        let can_chown = nix::unistd::chown(&theirs, Some(other), None).is_ok();

        assert_eq!(crate::list(&root).unwrap(), vec![]);
        assert!(!swept.exists(), "a dead remover's directory is left");
        assert!(
            live.join("sub").join(STATE_FILE).exists(),
            "a live remover's was touched"
        );
        assert!(link.symlink_metadata().is_ok() && outside.join("keep").exists());
        if can_chown {
            assert!(theirs.exists(), "another user's directory was removed");
        }

        // Removing a container sweeps too; creating one does not (the start path).
        let l = Locked::create(&root, "c6").unwrap();
        let swept = left_behind(&root, dead_pid(), "c5");
        let l2 = Locked::create(&root, "c7").unwrap();
        assert!(swept.exists(), "a create swept");
        l.remove().unwrap();
        assert!(!swept.exists(), "a dead remover's directory is left");
        assert!(live.exists());
        l2.remove().unwrap();
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn nothing_is_swept_in_a_root_others_may_write() {
        let root =
            std::env::temp_dir().join(format!("crabcan-state-sweep-open-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let left = left_behind(&root, dead_pid(), "c1");
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o777)).unwrap();
        sweep_gone(&root);
        assert!(left.exists(), "swept in a world-writable root");
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700)).unwrap();
        sweep_gone(&root);
        assert!(!left.exists());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(951_782_400, 1), "2000-02-29T00:00:00.000000001Z");
        assert_eq!(rfc3339(1_798_675_200, 0), "2026-12-31T00:00:00.000000000Z");
    }

    #[test]
    fn default_root_follows_the_caller() {
        assert_eq!(
            default_root(0, Some("/run/user/0")),
            Path::new("/run/crabcan")
        );
        assert_eq!(
            default_root(1000, Some("/run/user/1000")),
            Path::new("/run/user/1000/crabcan")
        );
        assert_eq!(default_root(1000, None), Path::new("/run/crabcan"));
    }

    proptest! {
        #[test]
        fn any_state_round_trips(pid in any::<i32>(), start in any::<u64>(), id in "[a-z0-9]{1,20}",
                                 ann in proptest::collection::btree_map(".{0,8}", ".{0,8}", 0..4)) {
            let mut s = sample();
            s.pid = pid;
            s.pid_start = start;
            s.id = id;
            s.annotations = ann;
            let text = serde_json::to_string(&s).unwrap();
            prop_assert_eq!(serde_json::from_str::<State>(&text).unwrap(), s);
        }
    }
}
