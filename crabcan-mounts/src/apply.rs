//! Walks a [`MountPlan`] in the container's own mount namespace and makes the syscalls.

use crate::options::MountOptions;
use crate::plan::{DeviceKind, DeviceNode, Fs, MountEntry, MountPlan, Root, Step};
use crate::sys::{self, PointKind};
use crabcan_errors::{Errcode, Result, SysContext};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags};
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::stat::{Mode, SFlag};
use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Host directories a scratch root's tmpfs may be mounted on: any existing one will do,
/// since every host path the container needs was cloned before it is mounted.
const SCRATCH_STAGING: &[&str] = &["/tmp", "/mnt", "/run", "/var/tmp", "/opt", "/srv", "/home"];

/// Size cap of the tmpfs mounts crabcan makes for `/dev`, `/dev/shm` and a scratch root.
const DEV_TMPFS_OPTS: &str = "mode=755,size=65536k";
const SHM_TMPFS_OPTS: &str = "mode=1777,size=65536k";

/// Mount points whose fresh filesystem the masked and read-only paths are looked up in.
const MASK_BASES: &[&str] = &["/proc", "/sys"];

enum Cloned {
    Missing,
    Symlink(PathBuf),
    Tree { fd: OwnedFd, is_dir: bool },
}

struct State<'p> {
    plan: &'p MountPlan,
    clones: Vec<Option<Cloned>>,
    root: Option<OwnedFd>,
    /// The root's device and inode, for the check that a mount point is not the root.
    root_id: (u64, u64),
    /// Idmapped clones made by the parent, by source index.
    given: Vec<Option<OwnedFd>>,
    /// The idmapped root made by the parent.
    given_root: Option<OwnedFd>,
    /// The directory root as opened once by the parent.
    pinned_root: Option<OwnedFd>,
    /// The roots of the fresh `/proc` and `/sys` (or the bound host `/sys`) by mount point.
    bases: Vec<(&'static str, OwnedFd)>,
    /// The directory (by its path in the root) where the last device node, symlink or file
    /// bind was made: `/dev`'s nodes and links are made one after the other in it, each
    /// without a walk from the root. Forgotten at every step that mounts on a directory,
    /// which could cover it.
    last_dir: std::cell::RefCell<Option<(PathBuf, std::rc::Rc<OwnedFd>)>>,
    /// The mounts of host directories bound so far (mount id, host path, whether the bind
    /// is recursive): nothing is ever made on one, nor on a mount below a recursive one
    /// (the host's own mounts in that directory came along), whatever path leads there
    /// (a symlink in the image may), as it would stay on the host after the container.
    host_binds: std::cell::RefCell<Vec<(u64, PathBuf, bool)>>,
    /// Binds of host directories attached since their ids were last read (the attached
    /// tree, host path, recursive): read only once something is to be made, so that a
    /// thousand binds and nothing to make cost no system call more.
    pending_binds: std::cell::RefCell<Vec<(OwnedFd, PathBuf, bool)>>,
    /// Whether a mount (by id) is below a recursive host bind, and which, as found once.
    below_bind: std::cell::RefCell<HashMap<u64, Option<PathBuf>>>,
    /// The filesystems crabcan mounted itself (by mount id) on a recursive host bind or
    /// below one: the container's own, like the root, even there (a tmpfs in a volume);
    /// every other mount met on the way up to a recursive bind is the host's.
    own_mounts: std::cell::RefCell<Vec<u64>>,
    /// The host directory of the bind a refused creation was in, for its error.
    refused: std::cell::RefCell<Option<PathBuf>>,
}

/// One idmapped clone the parent makes: the directory root or a source, by index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Root,
    Source(usize),
}

/// The idmapped clones `plan` needs, in the order [`handover`] returns them.
fn idmap_slots(plan: &MountPlan) -> Vec<Slot> {
    let mut slots: Vec<Slot> = plan
        .sources
        .iter()
        .enumerate()
        .filter(|(_, s)| s.idmap)
        .map(|(i, _)| Slot::Source(i))
        .collect();
    if root_step(plan).is_some_and(|r| r.idmap) {
        slots.push(Slot::Root);
    }
    slots
}

/// How the plan binds a directory root: read-only, idmapped.
#[derive(Debug, Clone, Copy)]
struct RootStep {
    read_only: bool,
    idmap: bool,
}

/// The plan's [`Step::RootFromDir`], if any.
fn root_step(plan: &MountPlan) -> Option<RootStep> {
    plan.steps.iter().find_map(|s| match s {
        Step::RootFromDir {
            read_only, idmap, ..
        } => Some(RootStep {
            read_only: *read_only,
            idmap: *idmap,
        }),
        _ => None,
    })
}

/// How many descriptors `plan` needs from [`handover`]: the pinned directory root, then
/// the idmapped clones.
pub fn handover_count(plan: &MountPlan) -> usize {
    usize::from(matches!(plan.root, Root::Dir(_))) + idmap_slots(plan).len()
}

/// Whether `plan` has idmapped mounts, so [`handover`] needs the container's user namespace.
pub fn needs_idmap(plan: &MountPlan) -> bool {
    !idmap_slots(plan).is_empty()
}

/// Opens a directory root once. An idmapped root must be named by its real path: whoever
/// can change a symlink on that path could point the container's root, whose files
/// container root then owns, at any host directory.
pub(crate) fn open_root_dir(plan: &MountPlan) -> Result<Option<OwnedFd>> {
    let Root::Dir(dir) = &plan.root else {
        return Ok(None);
    };
    let idmapped = root_step(plan).is_some_and(|r| r.idmap);
    sys::open_pinned(dir, true, idmapped)
        .map(Some)
        .map_err(|e| match e {
            Errno::ELOOP => Errcode::setup(format!(
                "refusing the container's root {}: a component of its path is a symlink, \
                 and an idmapped root must be named by its real path",
                dir.display()
            ))
            .with_hint("give the path without symlinks (realpath), or run without an id map"),
            e => Errcode::sys(format!("open the container's root {}", dir.display()), e),
        })
}

/// Host side: what the container's process needs from outside its mount namespace, in the
/// order [`apply_with`] takes it: the directory root `root` as opened once (by
/// [`crate::prepare`]; opened here when `None`), then the idmapped clones the plan asks for
/// (the root when [`crate::MountConfig::idmap_root`], and binds with `idmap`), made through
/// the id map of the user namespace `userns` (the container's, once its maps are written).
/// Idmapping needs privilege over the host's filesystems (root), which the container's
/// process lacks; send the result to it (e.g. over a unix socket).
pub fn handover(
    plan: &MountPlan,
    root: Option<BorrowedFd<'_>>,
    userns: Option<BorrowedFd<'_>>,
) -> Result<Vec<OwnedFd>> {
    let mut out = Vec::with_capacity(handover_count(plan));
    let pinned = match (&plan.root, root) {
        (Root::Dir(_), Some(fd)) => Some(
            fd.try_clone_to_owned()
                .sys_ctx(|| "duplicate the container's root descriptor")?,
        ),
        (Root::Dir(_), None) => open_root_dir(plan)?,
        (Root::Scratch, _) => None,
    };
    for slot in idmap_slots(plan) {
        let userns = userns.ok_or_else(|| {
            Errcode::setup("the mount plan has idmapped mounts but no user namespace was given")
        })?;
        let (tree, read_only, what) = match slot {
            Slot::Root => {
                let fd = pinned
                    .as_ref()
                    .ok_or_else(|| Errcode::setup("mount plan idmaps a scratch root"))?;
                let what = format!("make an idmapped bind of the root {}", dir_of(plan));
                let tree = sys::open_tree_fd(fd.as_fd(), true).sys_ctx(|| what.clone())?;
                (tree, root_step(plan).is_some_and(|r| r.read_only), what)
            }
            Slot::Source(i) => {
                let s = plan.sources.get(i).ok_or_else(|| {
                    Errcode::setup(format!("mount plan names a missing source #{i}"))
                })?;
                let what = format!("make an idmapped bind of {}", s.path.display());
                // As for the root: by its real path only.
                let at = sys::open_pinned(&s.path, false, true)
                    .sys_ctx(|| what.clone())
                    .map_err(|e| match e.errno() {
                        Some(Errno::ELOOP) => e.with_hint(
                            "an idmapped bind's source must be named without symlinks (realpath)",
                        ),
                        _ => e,
                    })?;
                let tree = sys::open_tree_fd(at.as_fd(), true).sys_ctx(|| what.clone())?;
                (tree, s.read_only, what)
            }
        };
        let mut set = sys::ATTR_NODEV;
        if read_only {
            set |= sys::ATTR_RDONLY;
        }
        sys::mount_setattr_idmap(tree.as_fd(), set, userns, true)
            .sys_ctx(|| what)
            .map_err(|e| match e.errno() {
                Some(Errno::EINVAL) => e.with_hint(
                    "its filesystem cannot be idmapped; only a container without an id map \
                     can use it (container root is then host root)",
                ),
                _ => e,
            })?;
        out.push(tree);
    }
    if let Some(p) = pinned {
        out.insert(0, p);
    }
    Ok(out)
}

fn dir_of(plan: &MountPlan) -> String {
    match &plan.root {
        Root::Dir(d) => d.display().to_string(),
        Root::Scratch => "(scratch)".into(),
    }
}

/// Applies `plan`: must run in a process with its own mount namespace (and, for the
/// `/proc` and `/sys` mounts, its own PID and network namespaces). Ends with the process's
/// root and working directory at the new root; the host's root is detached. A plan with
/// idmapped mounts needs [`handover`] from a privileged process and [`apply_with`].
pub fn apply(plan: &MountPlan) -> Result<()> {
    apply_with(plan, handover(plan, None, None)?)
}

/// [`apply`] with what [`handover`] made (the pinned root, then the idmapped clones).
pub fn apply_with(plan: &MountPlan, handed: Vec<OwnedFd>) -> Result<()> {
    if handed.len() != handover_count(plan) {
        return Err(Errcode::setup(format!(
            "mount plan needs {} handed-over descriptors, {} were given",
            handover_count(plan),
            handed.len()
        )));
    }
    let mut handed = handed.into_iter();
    let pinned_root = match plan.root {
        Root::Dir(_) => handed.next(),
        Root::Scratch => None,
    };
    let mut given: Vec<Option<OwnedFd>> = (0..plan.sources.len()).map(|_| None).collect();
    let mut given_root = None;
    for (slot, fd) in idmap_slots(plan).into_iter().zip(handed) {
        match slot {
            Slot::Root => given_root = Some(fd),
            Slot::Source(i) => given[i] = Some(fd),
        }
    }
    // Modes in the plan are meant literally (1777 for /tmp); the caller's umask must not
    // change them. The child is single-threaded, so this is safe to flip and restore.
    let old_umask = nix::sys::stat::umask(Mode::empty());
    let nofile = raise_nofile(plan.sources.len() as u64)?;
    let mut st = State {
        plan,
        clones: (0..plan.sources.len()).map(|_| None).collect(),
        root: None,
        root_id: (0, 0),
        given,
        given_root,
        pinned_root,
        bases: Vec::new(),
        last_dir: std::cell::RefCell::new(None),
        host_binds: std::cell::RefCell::new(Vec::new()),
        pending_binds: std::cell::RefCell::new(Vec::new()),
        below_bind: std::cell::RefCell::new(HashMap::new()),
        own_mounts: std::cell::RefCell::new(Vec::new()),
        refused: std::cell::RefCell::new(None),
    };
    let r = plan.steps.iter().try_for_each(|s| st.step(s));
    drop(st);
    nix::sys::stat::umask(old_umask);
    if let Some((soft, hard)) = nofile {
        setrlimit(Resource::RLIMIT_NOFILE, soft, hard)
            .sys_ctx(|| "restore the open-files limit")?;
    }
    r
}

/// Every source is held open as a detached mount until it is attached; with many extra
/// binds that can pass the soft open-files limit. Raises it (within the hard limit) for the
/// duration of [`apply`]; returns the limit to restore.
fn raise_nofile(sources: u64) -> Result<Option<(u64, u64)>> {
    let need = sources + 64;
    let (soft, hard) =
        getrlimit(Resource::RLIMIT_NOFILE).sys_ctx(|| "read the open-files limit")?;
    if need <= soft {
        return Ok(None);
    }
    if need > hard {
        return Err(Errcode::setup(format!(
            "{sources} bind mounts need {need} open files, but the hard limit is {hard}"
        )));
    }
    setrlimit(Resource::RLIMIT_NOFILE, need, hard)
        .sys_ctx(|| format!("raise the open-files limit to {need} for {sources} mounts"))?;
    Ok(Some((soft, hard)))
}

/// Explicit destinations reached without following any symlink.
const NO_SYMLINK_DESTINATIONS: &[&str] = &["/dev", "/proc", "/sys"];

/// procfs files an engine may mount over (lxcfs's views of the container's resources, a
/// pid namespace's last pid): the rest of a fresh `/proc` is the kernel's.
const PROC_OVERRIDES: &[&str] = &[
    "/proc/cpuinfo",
    "/proc/diskstats",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/swaps",
    "/proc/uptime",
    "/proc/loadavg",
    "/proc/slabinfo",
    "/proc/net/dev",
    "/proc/sys/kernel/ns_last_pid",
];

impl<'p> State<'p> {
    fn root(&self) -> Result<std::os::fd::BorrowedFd<'_>> {
        self.root
            .as_ref()
            .map(|f| f.as_fd())
            .ok_or_else(|| Errcode::setup("mount plan uses the root before setting it up"))
    }

    fn set_root(&mut self, root: OwnedFd) -> Result<()> {
        let st = nix::sys::stat::fstat(root.as_fd()).sys_ctx(|| "inspect the container's root")?;
        self.root_id = (st.st_dev, st.st_ino);
        self.root = Some(root);
        Ok(())
    }

    fn ensure(&self, path: &Path, kind: PointKind, mode: u32) -> Result<OwnedFd> {
        let mut may_create = |d: BorrowedFd<'_>, _: &Path| self.may_create(d);
        sys::ensure_in_root(
            self.root()?,
            path,
            kind,
            mode,
            &mut |_, _| {},
            &mut may_create,
        )
        .map_err(|e| self.creation_error(path, e))
    }

    /// Refuses (`EXDEV`) to make anything in `dir` when it is on the mount of a bound host
    /// directory ([`State::host_binds`]).
    fn may_create(&self, dir: BorrowedFd<'_>) -> std::result::Result<(), Errno> {
        self.read_pending_binds()?;
        let binds = self.host_binds.borrow();
        if binds.is_empty() {
            return Ok(());
        }
        let id = sys::mount_id(dir)?;
        let host = match binds.iter().find(|(m, _, _)| *m == id) {
            Some((_, host, _)) => Some(host.clone()),
            None if binds.iter().any(|(_, _, recursive)| *recursive) => self.below(id, &binds)?,
            None => None,
        };
        match host {
            Some(host) => {
                *self.refused.borrow_mut() = Some(host);
                Err(Errno::EXDEV)
            }
            None => Ok(()),
        }
    }

    /// The host directory of the recursive bind that mount `id` is below, if any: its
    /// chain of parent mounts (in /proc/self/mountinfo) reaches that bind's mount before
    /// the root's. Read once per mount, when something is to be made on it.
    fn below(
        &self,
        id: u64,
        binds: &[(u64, PathBuf, bool)],
    ) -> std::result::Result<Option<PathBuf>, Errno> {
        if let Some(v) = self.below_bind.borrow().get(&id) {
            return Ok(v.clone());
        }
        let root = sys::mount_id(self.root().map_err(|_| Errno::EBADF)?)?;
        if id == root {
            self.below_bind.borrow_mut().insert(id, None);
            return Ok(None);
        }
        let text = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
        let parents = mount_parents(&text);
        let own = self.own_mounts.borrow();
        let mut found = None;
        let mut cur = id;
        // A chain is never longer than the table.
        for _ in 0..=parents.len() {
            if cur == root || own.contains(&cur) {
                break;
            }
            if let Some((_, host, _)) = binds.iter().find(|(m, _, r)| *m == cur && *r) {
                found = Some(host.clone());
                break;
            }
            match parents.get(&cur) {
                Some(&p) if p != cur => cur = p,
                _ => break,
            }
        }
        self.below_bind.borrow_mut().insert(id, found.clone());
        Ok(found)
    }

    /// Notes the filesystem crabcan just mounted on `at` (the mount point of `target`) as
    /// the container's own ([`State::own_mounts`]), when `at` is on a recursive host bind
    /// or below one: elsewhere the way up from it never meets such a bind before the root
    /// or another own mount, and nothing needs noting (nothing at all without a recursive
    /// host bind).
    fn note_own_mount(&self, at: BorrowedFd<'_>, target: &Path) -> Result<()> {
        let what = || format!("identify the mount on {}", target.display());
        self.read_pending_binds().sys_ctx(what)?;
        let binds = self.host_binds.borrow();
        if !binds.iter().any(|(_, _, r)| *r) {
            return Ok(());
        }
        let on = sys::mount_id(at).sys_ctx(what)?;
        let below = binds.iter().any(|(m, _, r)| *m == on && *r)
            || self.below(on, &binds).sys_ctx(what)?.is_some();
        drop(binds);
        if !below {
            return Ok(());
        }
        let mounted = sys::open_in_root(self.root()?, target, OFlag::O_PATH).sys_ctx(what)?;
        let id = sys::mount_id(mounted.as_fd()).sys_ctx(what)?;
        // A verdict on an id a gone mount had is not this one's.
        self.below_bind.borrow_mut().remove(&id);
        self.own_mounts.borrow_mut().push(id);
        Ok(())
    }

    /// The error of a failed creation of `path`'s mount point.
    fn creation_error(&self, path: &Path, e: Errno) -> Errcode {
        match (e, self.refused.borrow_mut().take()) {
            (Errno::EXDEV, Some(host)) => Errcode::setup(format!(
                "refusing to create {} in the container: the path leads into the bind mount \
                 of {}, and what is made there would stay in that host directory",
                path.display(),
                host.display()
            ))
            .with_hint(format!(
                "create it in {} first; mind the symlinks in the container's root",
                host.display()
            )),
            (e, _) => Errcode::sys(format!("create mount point {}", path.display()), e),
        }
    }

    /// Notes the bind of the host directory `host` whose attached mount is `tree`, for
    /// [`State::may_create`].
    fn note_host_bind(&self, tree: OwnedFd, host: &Path, recursive: bool) {
        self.pending_binds
            .borrow_mut()
            .push((tree, host.to_path_buf(), recursive));
    }

    /// Reads the mount ids of the binds attached since the last call
    /// ([`State::pending_binds`]) into [`State::host_binds`].
    fn read_pending_binds(&self) -> std::result::Result<(), Errno> {
        let mut pending = self.pending_binds.borrow_mut();
        if pending.is_empty() {
            return Ok(());
        }
        let mut binds = self.host_binds.borrow_mut();
        for (tree, host, recursive) in pending.drain(..) {
            binds.push((sys::mount_id(tree.as_fd())?, host, recursive));
        }
        // What was found below the mounts before is found again with these binds in view.
        self.below_bind.borrow_mut().clear();
        Ok(())
    }

    /// The directory `dir` of the root (made if missing), kept for the next node or link
    /// made in it ([`State::last_dir`]).
    fn dir(&self, dir: &Path) -> Result<std::rc::Rc<OwnedFd>> {
        if let Some((p, fd)) = &*self.last_dir.borrow()
            && p == dir
        {
            return Ok(fd.clone());
        }
        let fd = std::rc::Rc::new(self.ensure(dir, PointKind::Dir, 0o755)?);
        *self.last_dir.borrow_mut() = Some((dir.to_path_buf(), fd.clone()));
        Ok(fd)
    }

    /// [`State::ensure`] for a file whose directory is likely [`State::last_dir`].
    fn ensure_file(&self, path: &Path) -> Result<OwnedFd> {
        if let (Some(parent), Some(name)) = (path.parent(), path.file_name()) {
            let dir = self.dir(parent)?;
            let may_create = |d: BorrowedFd<'_>| self.may_create(d);
            let found = sys::ensure_in_dir(dir.as_fd(), name, PointKind::File, 0o644, &may_create)
                .map_err(|e| self.creation_error(path, e))?;
            if let Some(fd) = found {
                return Ok(fd);
            }
        }
        self.ensure(path, PointKind::File, 0o644)
    }

    fn source(&self, index: usize) -> Result<&'p crate::plan::Source> {
        self.plan
            .sources
            .get(index)
            .ok_or_else(|| Errcode::setup(format!("mount plan names a missing source #{index}")))
    }

    fn take_clone(&mut self, index: usize) -> Result<Cloned> {
        self.clones
            .get_mut(index)
            .and_then(Option::take)
            .ok_or_else(|| Errcode::setup(format!("mount plan attaches source #{index} twice")))
    }

    fn step(&mut self, step: &Step) -> Result<()> {
        // A mount on a directory may cover the one kept; one on a file covers none (the
        // attaching steps forget it themselves when what they attach is a directory).
        if !matches!(
            step,
            Step::Device { .. }
                | Step::Symlink { .. }
                | Step::Dir { .. }
                | Step::HostDir { .. }
                | Step::Attach { .. }
        ) {
            self.last_dir.get_mut().take();
        }
        match step {
            Step::MakePrivate => nix::mount::mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .sys_ctx(|| "make / recursively private"),
            Step::MakeSlave => nix::mount::mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_SLAVE,
                None::<&str>,
            )
            .sys_ctx(|| "make / recursively slave"),
            Step::Mount(entry) => {
                self.mount_entry(entry)?;
                self.record_base(&entry.destination)
            }
            Step::Bind {
                index,
                target,
                options,
            } => {
                self.bind_entry(*index, target, options)?;
                self.record_base(target)
            }
            Step::Cgroup { target, options } => self.cgroup(target, options),
            Step::Device { node, bind } => self.device(node, *bind),
            Step::MoveRoot => self.move_root(),
            Step::RootPropagation(p) => nix::mount::mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::from_bits_retain(p.ms_flags()),
                None::<&str>,
            )
            .sys_ctx(|| format!("make the container's root {p}")),
            Step::Clone { index } => {
                let src = self.source(*index)?;
                let cloned = match self.given.get_mut(*index).and_then(Option::take) {
                    Some(fd) => tree(fd, &src.path)?,
                    None if src.idmap => {
                        return Err(Errcode::setup(format!(
                            "no idmapped mount of {} was given",
                            src.path.display()
                        )));
                    }
                    None => clone_source(src)?,
                };
                if let Some(slot) = self.clones.get_mut(*index) {
                    *slot = Some(cloned);
                }
                Ok(())
            }
            Step::RootFromDir {
                dir,
                read_only,
                idmap,
            } => {
                let what = || format!("bind {} as the container's root", dir.display());
                // The directory as the parent opened it once (in the host's mount
                // namespace, so it cannot be a mount target here): the name is looked up
                // again in this namespace, and must lead to that very directory.
                let pinned = self
                    .pinned_root
                    .take()
                    .ok_or_else(|| Errcode::setup("no descriptor of the container's root"))?;
                let at = sys::open_pinned(dir, true, *idmap).sys_ctx(what)?;
                let swapped = || {
                    Errcode::setup(format!(
                        "refusing the container's root {}: it is not the directory crabcan \
                         opened at start (a component of its path was replaced meanwhile)",
                        dir.display()
                    ))
                };
                if !sys::same_inode(at.as_fd(), pinned.as_fd()).sys_ctx(what)? {
                    return Err(swapped());
                }
                let tree = match (self.given_root.take(), idmap) {
                    (Some(t), _) => t,
                    (None, true) => {
                        return Err(Errcode::setup(format!(
                            "no idmapped mount of the root {} was given",
                            dir.display()
                        )));
                    }
                    (None, false) => {
                        let tree = sys::open_tree_fd(at.as_fd(), true).sys_ctx(what)?;
                        // Device nodes shipped in an image must not open; read-only when
                        // asked. Recursive, so that mounts below the root directory are
                        // covered too.
                        let mut set = sys::ATTR_NODEV;
                        if *read_only {
                            set |= sys::ATTR_RDONLY;
                        }
                        sys::mount_setattr(tree.as_fd(), set, true)
                            .sys_ctx(|| "make the container's root nodev and read-only")?;
                        tree
                    }
                };
                if !sys::same_inode(tree.as_fd(), pinned.as_fd()).sys_ctx(what)? {
                    return Err(swapped());
                }
                sys::move_mount(tree.as_fd(), at.as_fd()).sys_ctx(what)?;
                // The attached tree's own descriptor is the new root.
                self.set_root(tree)
            }
            Step::RootScratch { size } => {
                let staging = SCRATCH_STAGING
                    .iter()
                    .map(Path::new)
                    .find(|p| p.is_dir())
                    .ok_or_else(|| {
                        Errcode::setup(format!(
                            "no directory to mount the scratch root on (tried {})",
                            SCRATCH_STAGING.join(", ")
                        ))
                    })?;
                nix::mount::mount(
                    Some("tmpfs"),
                    staging,
                    Some("tmpfs"),
                    MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                    Some(format!("mode=755,size={size}").as_str()),
                )
                .sys_ctx(|| format!("mount the scratch root (tmpfs) on {}", staging.display()))?;
                self.set_root(
                    open_dir(staging)
                        .sys_ctx(|| format!("open the scratch root at {}", staging.display()))?,
                )
            }
            Step::Dir { path, mode } => self.ensure(path, PointKind::Dir, *mode).map(drop),
            Step::Symlink { path, target } => self.symlink(path, target),
            Step::HostDir { index, path } => match self.take_clone(*index)? {
                Cloned::Missing => Ok(()),
                Cloned::Symlink(target) => self.symlink(path, &target),
                Cloned::Tree { fd, is_dir } => {
                    let recursive = self.source(*index)?.recursive;
                    self.attach(fd, is_dir, recursive, path, path)
                }
            },
            Step::Attach { index, target } => {
                let src = self.source(*index)?;
                let (source, recursive) = (src.path.clone(), src.recursive);
                match self.take_clone(*index)? {
                    Cloned::Tree { fd, is_dir } => {
                        self.attach(fd, is_dir, recursive, &source, target)?;
                        self.record_base(target)
                    }
                    _ => Err(Errcode::setup(format!(
                        "cannot bind-mount {}: it vanished",
                        source.display()
                    ))),
                }
            }
            Step::Fresh { fs, target, gid } => {
                self.fresh(*fs, target, *gid)?;
                self.record_base(target)
            }
            Step::Mask { path } => self.mask(path),
            Step::ReadOnly { path } => self.read_only(path),
            Step::RootReadOnly => sys::mount_setattr(self.root()?, sys::ATTR_RDONLY, false)
                .sys_ctx(|| "make the container's root read-only"),
            Step::Pivot => self.pivot(),
        }
    }

    fn symlink(&self, path: &Path, target: &Path) -> Result<()> {
        let what = || format!("create symlink {} -> {}", path.display(), target.display());
        let parent = path.parent().unwrap_or(Path::new("/"));
        let name = path.file_name().ok_or(Errno::EINVAL).sys_ctx(what)?;
        let pfd = self.dir(parent)?;
        if let Err(e) = self.may_create(pfd.as_fd()) {
            // A link already there needs nothing made.
            let at = nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW;
            if nix::sys::stat::fstatat(pfd.as_fd(), name, at).is_ok() {
                self.refused.borrow_mut().take();
                return Ok(());
            }
            return Err(self.creation_error(path, e));
        }
        match nix::unistd::symlinkat(target, pfd.as_fd(), name) {
            Ok(()) | Err(Errno::EEXIST) => Ok(()),
            Err(e) => Err(Errcode::sys(what(), e)),
        }
    }

    /// [`State::ensure_file`] for a point most likely missing (the device nodes bound into
    /// the `/dev` crabcan mounted, above all): made at once, and looked up only when
    /// something is there already or nothing may be made in its directory. `true`: made
    /// here, so a fresh file.
    fn ensure_file_made(&self, path: &Path) -> Result<(OwnedFd, bool)> {
        if let (Some(parent), Some(name)) = (path.parent(), path.file_name()) {
            let dir = self.dir(parent)?;
            if self.may_create(dir.as_fd()).is_ok() {
                match sys::make_in(dir.as_fd(), name, PointKind::File, 0o644) {
                    Ok(fd) => return Ok((fd, true)),
                    Err(Errno::EEXIST) => {}
                    Err(e) => return Err(self.creation_error(path, e)),
                }
            } else {
                // The lookup below decides: what is there needs nothing made.
                self.refused.borrow_mut().take();
            }
        }
        Ok((self.ensure_file(path)?, false))
    }

    /// Attaches the cloned `tree` of `source` (recursive or not) at `target`.
    fn attach(
        &self,
        tree: OwnedFd,
        is_dir: bool,
        recursive: bool,
        source: &Path,
        target: &Path,
    ) -> Result<()> {
        let (at, made) = if is_dir {
            self.last_dir.borrow_mut().take();
            (self.ensure(target, PointKind::Dir, 0o755)?, false)
        } else {
            self.ensure_file_made(target)?
        };
        // A fresh file is not the root; only what was there may resolve to it.
        if !made {
            self.refuse_root(at.as_fd(), target)?;
        }
        sys::move_mount(tree.as_fd(), at.as_fd())
            .sys_ctx(|| format!("bind-mount {} to {}", source.display(), target.display()))?;
        if is_dir {
            self.note_host_bind(tree, source, recursive);
        }
        Ok(())
    }

    /// A symlink in the image may lead a mount point anywhere inside the root, but never to
    /// the root itself: a mount there would cover the whole container (and `/proc` there
    /// would be reachable at `/..` after `pivot_root`).
    fn refuse_root(&self, at: std::os::fd::BorrowedFd<'_>, target: &Path) -> Result<()> {
        let what = || format!("check mount point {}", target.display());
        self.root()?;
        let st = nix::sys::stat::fstat(at).sys_ctx(what)?;
        if (st.st_dev, st.st_ino) == self.root_id {
            return Err(Errcode::setup(format!(
                "refusing to mount on {}: it resolves to the container's root itself \
                 (a symlink in the image)",
                target.display()
            )));
        }
        Ok(())
    }

    /// Opens the mount point of a fresh filesystem, refusing any symlink on its path: an
    /// image's `/proc -> /` or `/dev -> /` must not place `/proc` or `/dev` elsewhere.
    fn ensure_no_symlinks(&self, target: &Path) -> Result<OwnedFd> {
        let root = self.root()?;
        let open = || sys::open_in_root_no_symlinks(root, target, OFlag::O_PATH);
        let at = match open() {
            Err(Errno::ENOENT) => {
                drop(self.ensure(target, PointKind::Dir, 0o755)?);
                open()
            }
            r => r,
        };
        let at = at.map_err(|e| match e {
            Errno::ELOOP => Errcode::setup(format!(
                "refusing to mount on {}: it is a symlink in the container's root \
                 (an image must not redirect /proc, /sys or /dev)",
                target.display()
            )),
            e => Errcode::sys(format!("open mount point {}", target.display()), e),
        })?;
        self.refuse_root(at.as_fd(), target)?;
        Ok(at)
    }

    /// Opens (creating it when missing) the mount point of an explicit entry.
    ///
    /// The OCI `/dev`, `/proc` and `/sys` are reached without any symlink: an image's
    /// `/dev -> proc` would put the `/dev` tmpfs over the fresh `/proc`. Any other
    /// destination may follow the image's symlinks inside the root, but must not end on
    /// the fresh procfs or sysfs (an image's `/etc/resolv.conf ->
    /// /proc/sys/kernel/core_pattern` would have the engine's file bound over a kernel
    /// setting), except the few places engines legitimately cover, named directly.
    fn entry_target(
        &self,
        target: &Path,
        kind: PointKind,
        fresh_kernel_fs: bool,
    ) -> Result<OwnedFd> {
        let at = if fresh_kernel_fs
            || NO_SYMLINK_DESTINATIONS
                .iter()
                .any(|d| Path::new(d) == target)
        {
            self.ensure_no_symlinks(target)?
        } else {
            let mode = if kind == PointKind::Dir { 0o755 } else { 0o644 };
            let at = self.ensure(target, kind, mode)?;
            self.refuse_root(at.as_fd(), target)?;
            at
        };
        if !fresh_kernel_fs {
            self.refuse_kernel_fs(at.as_fd(), target)?;
        }
        Ok(at)
    }

    /// Refuses a mount point `at` (for `target`) on procfs or sysfs, unless `target` is one
    /// engines may cover, named below the fresh mount: a procfs file of [`PROC_OVERRIDES`],
    /// or a path below `/sys/`.
    fn refuse_kernel_fs(&self, at: BorrowedFd<'_>, target: &Path) -> Result<()> {
        use nix::sys::statfs::{PROC_SUPER_MAGIC, SYSFS_MAGIC, fstatfs};
        let what = || format!("check mount point {}", target.display());
        let ty = fstatfs(at).sys_ctx(what)?.filesystem_type();
        let (name, base, may_cover) = if ty == PROC_SUPER_MAGIC {
            (
                "procfs",
                "/proc",
                PROC_OVERRIDES.iter().any(|p| Path::new(p) == target),
            )
        } else if ty == SYSFS_MAGIC {
            ("sysfs", "/sys", target.starts_with("/sys/"))
        } else {
            return Ok(());
        };
        // Named below the fresh mount itself, reached without a symlink of the image's:
        // the rest of the way is the kernel's (procfs's own `net -> self/net`).
        if may_cover
            && let Ok(b) = sys::open_in_root_no_symlinks(
                self.root()?,
                Path::new(base),
                OFlag::O_PATH | OFlag::O_DIRECTORY,
            )
            && fstatfs(b.as_fd()).is_ok_and(|f| f.filesystem_type() == ty)
        {
            return Ok(());
        }
        Err(Errcode::setup(format!(
            "refusing to mount on {}: it lies on the container's {name} \
             (a symlink in the image, or a kernel file no mount may cover)",
            target.display()
        )))
    }

    /// Remembers the root of a fresh `/proc` or `/sys` for the masked paths below it.
    fn record_base(&mut self, target: &Path) -> Result<()> {
        let Some(base) = MASK_BASES.iter().find(|b| Path::new(b) == target) else {
            return Ok(());
        };
        let fd =
            sys::open_in_root_no_symlinks(self.root()?, target, OFlag::O_PATH | OFlag::O_DIRECTORY)
                .sys_ctx(|| format!("open the new {}", target.display()))?;
        self.bases.push((base, fd));
        Ok(())
    }

    /// Opens a masked or read-only `path`: inside the fresh `/proc` or `/sys` when it lies
    /// below one (without leaving that mount), else in the root.
    fn open_protected(&self, path: &Path) -> std::result::Result<OwnedFd, Errno> {
        for (base, fd) in &self.bases {
            if let Ok(rel) = path.strip_prefix(base) {
                return sys::open_on_mount(fd.as_fd(), rel, OFlag::O_PATH);
            }
        }
        let root = self.root().map_err(|_| Errno::EBADF)?;
        sys::open_in_root(root, path, OFlag::O_PATH)
    }

    fn fresh(&self, fs: Fs, target: &Path, gid: Option<u32>) -> Result<()> {
        let MountArgs {
            source,
            fstype,
            flags,
            data,
        } = fresh_args(fs, gid);
        let data = data.as_deref();
        let source = source.as_str();
        let fstype = fstype.as_str();
        let at = self.ensure_no_symlinks(target)?;
        nix::mount::mount(
            Some(source),
            sys::fd_path(at.as_fd()).as_str(),
            Some(fstype),
            MsFlags::from_bits_retain(flags),
            data,
        )
        .sys_ctx(|| format!("mount {fstype} on {}", target.display()))
        .map_err(|e| match (fs, e.errno()) {
            (Fs::Sysfs, Some(Errno::EPERM)) => {
                e.with_hint("a fresh sysfs needs the container's own network namespace")
            }
            (Fs::Proc, Some(Errno::EPERM)) => {
                e.with_hint("the host's /proc has paths mounted over; a fresh proc is refused")
            }
            _ => e,
        })?;
        self.note_own_mount(at.as_fd(), target)
    }

    /// Mounts an entry of the explicit layout. `proc` and `sysfs`, and anything on `/dev`,
    /// `/proc` or `/sys`, refuse any symlink on the way (as the default layout's); other
    /// destinations follow symlinks inside the root, but not onto procfs or sysfs.
    fn mount_entry(&self, e: &MountEntry) -> Result<()> {
        let target = e.destination.as_path();
        let args = entry_args(e);
        let fresh_kernel_fs = matches!(args.fstype.as_str(), "proc" | "sysfs");
        let at = self.entry_target(target, PointKind::Dir, fresh_kernel_fs)?;
        let what = || format!("mount {} on {}", args.fstype, target.display());
        let copy_up = e.options.copy_up && args.fstype == "tmpfs";
        // The covered directory, opened before the mount hides it.
        let below = if copy_up {
            Some(
                sys::reopen_dir(at.as_fd())
                    .sys_ctx(|| format!("open {} to copy it up", target.display()))?,
            )
        } else {
            None
        };
        // Filled while writable; made read-only after.
        let flags = if copy_up {
            args.flags & !libc::MS_RDONLY
        } else {
            args.flags
        };
        nix::mount::mount(
            Some(args.source.as_str()),
            sys::fd_path(at.as_fd()).as_str(),
            Some(args.fstype.as_str()),
            MsFlags::from_bits_retain(flags),
            args.data.as_deref(),
        )
        .sys_ctx(what)?;
        self.note_own_mount(at.as_fd(), target)?;
        if let Some(below) = below {
            let mounted = sys::open_in_root(self.root()?, target, OFlag::O_PATH).sys_ctx(what)?;
            let fresh = sys::reopen_dir(mounted.as_fd()).sys_ctx(what)?;
            let mode_given = e.options.data.iter().any(|d| d.starts_with("mode="));
            crate::copyup::copy_tree(below.as_fd(), fresh.as_fd(), mode_given).map_err(
                |(p, errno)| {
                    Errcode::sys(
                        format!(
                            "copy {} into the tmpfs mounted over it (tmpcopyup)",
                            target.join(p).display()
                        ),
                        errno,
                    )
                },
            )?;
            if e.options.read_only() {
                sys::mount_setattr(mounted.as_fd(), sys::ATTR_RDONLY, false).sys_ctx(what)?;
            }
        }
        if e.options.rec_set == 0 && e.options.rec_clear == 0 && e.options.propagation.is_none() {
            return Ok(());
        }
        // The descriptor above is the directory now covered; the new mount is what the
        // destination leads to now.
        let mounted = sys::open_in_root(self.root()?, target, OFlag::O_PATH).sys_ctx(what)?;
        self.after_mount(mounted.as_fd(), &e.options, target)
    }

    /// Attaches a bind entry: its top mount gets the flags the words set (the attributes a
    /// `MS_BIND|MS_REMOUNT` would change, and only those, so flags the kernel locks on the
    /// source stay), the `r…` words apply to the whole tree, then the propagation.
    fn bind_entry(&mut self, index: usize, target: &Path, options: &MountOptions) -> Result<()> {
        let src = self.source(index)?;
        let (source, recursive) = (src.path.clone(), src.recursive);
        let Cloned::Tree { fd, is_dir } = self.take_clone(index)? else {
            return Err(Errcode::setup(format!(
                "cannot bind-mount {}: it vanished",
                source.display()
            )));
        };
        let what = || format!("bind-mount {} to {}", source.display(), target.display());
        let (set, clear) = options.bind_attrs();
        if set != 0 || clear != 0 {
            sys::mount_setattr_clear(fd.as_fd(), set, clear, false).sys_ctx(what)?;
        }
        if options.rec_set != 0 || options.rec_clear != 0 {
            sys::mount_setattr_clear(fd.as_fd(), options.rec_set, options.rec_clear, true)
                .sys_ctx(what)?;
        }
        let kind = if is_dir {
            PointKind::Dir
        } else {
            PointKind::File
        };
        let at = self.entry_target(target, kind, false)?;
        sys::move_mount(fd.as_fd(), at.as_fd()).sys_ctx(what)?;
        if let Some(p) = options.propagation {
            propagate(fd.as_fd(), p.ms_flags()).sys_ctx(what)?;
        }
        if is_dir {
            self.note_host_bind(fd, &source, recursive);
        }
        Ok(())
    }

    /// The `r…` attributes and the propagation of a fresh mount, given its root.
    fn after_mount(&self, mounted: BorrowedFd<'_>, o: &MountOptions, target: &Path) -> Result<()> {
        let what = || format!("set the options of the mount on {}", target.display());
        if o.rec_set != 0 || o.rec_clear != 0 {
            sys::mount_setattr_clear(mounted, o.rec_set, o.rec_clear, true).sys_ctx(what)?;
        }
        if let Some(p) = o.propagation {
            propagate(mounted, p.ms_flags()).sys_ctx(what)?;
        }
        Ok(())
    }

    /// Mounts the cgroup filesystems at `target`: see [`crate::cgroup`].
    fn cgroup(&self, target: &Path, options: &MountOptions) -> Result<()> {
        let at = self.ensure(target, PointKind::Dir, 0o755)?;
        self.refuse_root(at.as_fd(), target)?;
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
            .sys_ctx(|| "read /proc/self/mountinfo for the cgroup mounts")?;
        let layout = crate::cgroup::layout(&mountinfo);
        crate::cgroup::mount(self.root()?, target, at.as_fd(), &layout, options)?;
        self.note_own_mount(at.as_fd(), target)
    }

    /// Makes a device node: mknod with its mode and owner, or (in a user namespace, where
    /// mknod is refused) a read-only bind of the host's node of the same path, which keeps
    /// the host's mode and owner (read-only so that chmod through it fails).
    fn device(&self, node: &DeviceNode, bind: bool) -> Result<()> {
        let path = node.path.as_path();
        let what = || format!("create device {}", path.display());
        if bind {
            let tree = sys::open_tree(path, false, false).sys_ctx(what)?;
            sys::mount_setattr(tree.as_fd(), sys::ATTR_RDONLY, false).sys_ctx(what)?;
            let st = nix::sys::stat::fstat(tree.as_fd()).sys_ctx(what)?;
            if !device_matches(st.st_mode, st.st_rdev, node) {
                return Err(Errcode::setup(format!(
                    "the host's {} is not the {:?} device {}:{} asked for",
                    path.display(),
                    node.kind,
                    node.major,
                    node.minor
                )));
            }
            return self.attach(tree, false, false, path, path);
        }
        let parent = path.parent().unwrap_or(Path::new("/"));
        let name = path.file_name().ok_or(Errno::EINVAL).sys_ctx(what)?;
        let pfd = self.dir(parent)?;
        let kind = match node.kind {
            DeviceKind::Char => SFlag::S_IFCHR,
            DeviceKind::Block => SFlag::S_IFBLK,
            DeviceKind::Fifo => SFlag::S_IFIFO,
        };
        // The very node asked for, there already (a root used before), is taken as it is:
        // same device, mode and owner; anything else there is refused.
        let at = nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW;
        if let Ok(st) = nix::sys::stat::fstatat(pfd.as_fd(), name, at) {
            let same = device_matches(st.st_mode, st.st_rdev, node)
                && st.st_mode & 0o7777 == node.file_mode & 0o7777
                && (st.st_uid, st.st_gid) == (node.uid, node.gid);
            if same {
                return Ok(());
            }
            return Err(Errcode::setup(format!(
                "cannot create device {}: something else exists there already",
                path.display()
            )));
        }
        self.may_create(pfd.as_fd())
            .map_err(|e| self.creation_error(path, e))?;
        let perm = Mode::from_bits_truncate(node.file_mode & 0o7777);
        let dev = nix::sys::stat::makedev(node.major, node.minor);
        nix::sys::stat::mknodat(pfd.as_fd(), name, kind, perm, dev).map_err(|e| match e {
            Errno::EEXIST => Errcode::setup(format!(
                "cannot create device {}: something exists there already",
                path.display()
            )),
            e => Errcode::sys(what(), e),
        })?;
        nix::unistd::fchownat(
            pfd.as_fd(),
            name,
            Some(nix::unistd::Uid::from_raw(node.uid)),
            Some(nix::unistd::Gid::from_raw(node.gid)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .sys_ctx(|| format!("set the owner of device {}", path.display()))?;
        // The owner change clears set-id bits; the mode is set once more after it.
        nix::sys::stat::fchmodat(
            pfd.as_fd(),
            name,
            perm,
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
        .sys_ctx(|| format!("set the mode of device {}", path.display()))
    }

    /// Switches into the root without `pivot_root`: moves its mount onto `/` and chroots.
    fn move_root(&self) -> Result<()> {
        nix::unistd::fchdir(self.root()?).sys_ctx(|| "enter the container's root")?;
        nix::mount::mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
            .sys_ctx(|| "move the container's root onto /")?;
        nix::unistd::chroot(".").sys_ctx(|| "chroot into the container's root")?;
        nix::unistd::chdir("/").sys_ctx(|| "chdir / in the container")
    }

    fn mask(&self, path: &Path) -> Result<()> {
        let what = || format!("mask {}", path.display());
        let at = match self.open_protected(path) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(Errcode::sys(what(), e)),
        };
        let st = nix::sys::stat::fstat(at.as_fd()).sys_ctx(what)?;
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
            nix::mount::mount(
                Some("tmpfs"),
                sys::fd_path(at.as_fd()).as_str(),
                Some("tmpfs"),
                MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                Some("size=0,mode=555"),
            )
            .sys_ctx(what)
        } else {
            let null = sys::open_tree(Path::new("/dev/null"), false, true).sys_ctx(what)?;
            // Read-only, or container root could chmod the host's /dev/null through it.
            sys::mount_setattr(null.as_fd(), sys::ATTR_RDONLY, false).sys_ctx(what)?;
            sys::move_mount(null.as_fd(), at.as_fd()).sys_ctx(what)
        }
    }

    fn read_only(&self, path: &Path) -> Result<()> {
        let what = || format!("make {} read-only", path.display());
        let at = match self.open_protected(path) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(Errcode::sys(what(), e)),
        };
        let tree = sys::open_tree_fd(at.as_fd(), true).sys_ctx(what)?;
        sys::mount_setattr(tree.as_fd(), sys::ATTR_RDONLY, true).sys_ctx(what)?;
        sys::move_mount(tree.as_fd(), at.as_fd()).sys_ctx(what)
    }

    fn pivot(&self) -> Result<()> {
        nix::unistd::fchdir(self.root()?).sys_ctx(|| "enter the container's root")?;
        nix::unistd::pivot_root(".", ".").sys_ctx(|| "pivot_root into the container's root")?;
        // The old root is now stacked on top of the new one at "/": detach it so that no
        // path inside the container reaches the host's filesystem.
        nix::mount::umount2(".", MntFlags::MNT_DETACH).sys_ctx(|| "detach the old root")?;
        nix::unistd::chdir("/").sys_ctx(|| "chdir / in the container")
    }
}

fn open_dir(p: &Path) -> std::result::Result<OwnedFd, Errno> {
    nix::fcntl::open(
        p,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

fn clone_source(src: &crate::plan::Source) -> Result<Cloned> {
    let path = src.path.as_path();
    let what = || format!("bind-mount {}", path.display());
    if src.optional {
        match nix::sys::stat::lstat(path) {
            Err(Errno::ENOENT) => return Ok(Cloned::Missing),
            Err(e) => return Err(Errcode::sys(what(), e)),
            Ok(st) if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK => {
                let t = nix::fcntl::readlink(path).sys_ctx(what)?;
                return Ok(Cloned::Symlink(PathBuf::from(t)));
            }
            Ok(_) => {}
        }
    }
    let fd = sys::open_tree(path, src.recursive, true).sys_ctx(what)?;
    let mut set = 0;
    if src.read_only {
        set |= sys::ATTR_RDONLY;
    }
    if src.nodev {
        set |= sys::ATTR_NODEV;
    }
    if set != 0 {
        sys::mount_setattr(fd.as_fd(), set, src.recursive)
            .sys_ctx(|| format!("set the attributes of the bind of {}", path.display()))?;
    }
    tree(fd, path)
}

/// Each mount's parent mount, by id, from the text of /proc/self/mountinfo (its first two
/// fields).
fn mount_parents(mountinfo: &str) -> HashMap<u64, u64> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let mut f = l.split(' ');
            Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
        })
        .collect()
}

fn tree(fd: OwnedFd, path: &Path) -> Result<Cloned> {
    let st =
        nix::sys::stat::fstat(fd.as_fd()).sys_ctx(|| format!("bind-mount {}", path.display()))?;
    let is_dir = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
    Ok(Cloned::Tree { fd, is_dir })
}

/// The arguments of one mount(2) call.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MountArgs {
    source: String,
    fstype: String,
    flags: libc::c_ulong,
    data: Option<String>,
}

/// The mount(2) arguments of a default-layout filesystem.
fn fresh_args(fs: Fs, gid: Option<u32>) -> MountArgs {
    let args = |source: &str, fstype: &str, flags, data: Option<String>| MountArgs {
        source: source.into(),
        fstype: fstype.into(),
        flags,
        data,
    };
    let hardened = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    match fs {
        Fs::Proc => args("proc", "proc", hardened, None),
        Fs::Sysfs => args("sysfs", "sysfs", libc::MS_RDONLY | hardened, None),
        Fs::DevTmpfs => args(
            "tmpfs",
            "tmpfs",
            libc::MS_NOSUID | libc::MS_NOEXEC | libc::MS_STRICTATIME,
            Some(DEV_TMPFS_OPTS.into()),
        ),
        Fs::Devpts => {
            let mut data = "newinstance,ptmxmode=0666,mode=0620".to_string();
            if let Some(g) = gid {
                data.push_str(&format!(",gid={g}"));
            }
            args(
                "devpts",
                "devpts",
                libc::MS_NOSUID | libc::MS_NOEXEC,
                Some(data),
            )
        }
        Fs::Shm => args("shm", "tmpfs", hardened, Some(SHM_TMPFS_OPTS.into())),
    }
}

/// The mount(2) arguments of an explicit-layout entry (not a bind): the source defaults to
/// the type's name, as runc's does.
fn entry_args(e: &MountEntry) -> MountArgs {
    MountArgs {
        source: e
            .source
            .as_ref()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| e.fstype.clone()),
        fstype: e.fstype.clone(),
        flags: e.options.flags,
        data: e.options.data_string(),
    }
}

/// Whether a host node (`st_mode`, `st_rdev`) is the device `node` describes.
fn device_matches(st_mode: u32, rdev: u64, node: &DeviceNode) -> bool {
    let kind = match node.kind {
        DeviceKind::Char => SFlag::S_IFCHR,
        DeviceKind::Block => SFlag::S_IFBLK,
        DeviceKind::Fifo => {
            return SFlag::from_bits_truncate(st_mode) & SFlag::S_IFMT == SFlag::S_IFIFO;
        }
    };
    SFlag::from_bits_truncate(st_mode) & SFlag::S_IFMT == kind
        && nix::sys::stat::major(rdev) == node.major
        && nix::sys::stat::minor(rdev) == node.minor
}

/// Sets a propagation type on the mount whose root `mounted` is. A separate call: the
/// kernel takes no other flag with a propagation change.
fn propagate(mounted: BorrowedFd<'_>, flags: libc::c_ulong) -> std::result::Result<(), Errno> {
    nix::mount::mount(
        None::<&str>,
        sys::fd_path(mounted).as_str(),
        None::<&str>,
        MsFlags::from_bits_retain(flags),
        None::<&str>,
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_mount_has_its_parent_from_mountinfo() {
        let text = "22 1 0:21 / / rw - ext4 /dev/vda rw\n\
                    31 22 0:30 / /data rw - tmpfs tmpfs rw\n\
                    40 31 0:31 / /data/sub rw - tmpfs tmpfs rw\n\
                    garbage line\n";
        let p = super::mount_parents(text);
        assert_eq!(p.len(), 3);
        assert_eq!((p[&22], p[&31], p[&40]), (1, 22, 31));
    }

    use super::*;

    #[test]
    fn default_layout_mount_arguments() {
        let a = fresh_args(Fs::Proc, None);
        assert_eq!((a.source.as_str(), a.fstype.as_str()), ("proc", "proc"));
        assert_eq!(a.flags, libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC);
        assert_eq!(a.data, None);
        let a = fresh_args(Fs::Sysfs, None);
        assert!(a.flags & libc::MS_RDONLY != 0);
        let a = fresh_args(Fs::DevTmpfs, None);
        assert_eq!(
            a.flags & libc::MS_NODEV,
            0,
            "device nodes in /dev must open"
        );
        assert_eq!(a.data.as_deref(), Some("mode=755,size=65536k"));
        assert_eq!(
            fresh_args(Fs::Devpts, Some(5)).data.as_deref(),
            Some("newinstance,ptmxmode=0666,mode=0620,gid=5")
        );
        assert_eq!(
            fresh_args(Fs::Devpts, None).data.as_deref(),
            Some("newinstance,ptmxmode=0666,mode=0620")
        );
        let a = fresh_args(Fs::Shm, None);
        assert_eq!((a.source.as_str(), a.fstype.as_str()), ("shm", "tmpfs"));
        assert_eq!(a.data.as_deref(), Some("mode=1777,size=65536k"));
    }

    #[test]
    fn entry_mount_arguments() {
        let e = MountEntry::new(
            "/dev",
            "tmpfs",
            None,
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )
        .unwrap();
        assert_eq!(
            entry_args(&e),
            MountArgs {
                source: "tmpfs".into(),
                fstype: "tmpfs".into(),
                flags: libc::MS_NOSUID | libc::MS_STRICTATIME,
                data: Some("mode=755,size=65536k".into()),
            }
        );
        let e = MountEntry::new("/dev/mqueue", "mqueue", Some("mqueue"), &["ro"]).unwrap();
        let a = entry_args(&e);
        assert_eq!(
            (a.source.as_str(), a.flags, a.data),
            ("mqueue", libc::MS_RDONLY, None)
        );
    }

    #[test]
    fn device_identity() {
        let node = DeviceNode {
            path: "/dev/null".into(),
            kind: DeviceKind::Char,
            major: 1,
            minor: 3,
            file_mode: 0o666,
            uid: 0,
            gid: 0,
        };
        let chr = libc::S_IFCHR | 0o666;
        assert!(device_matches(chr, nix::sys::stat::makedev(1, 3), &node));
        assert!(!device_matches(chr, nix::sys::stat::makedev(1, 5), &node));
        assert!(!device_matches(
            libc::S_IFBLK | 0o666,
            nix::sys::stat::makedev(1, 3),
            &node
        ));
        let fifo = DeviceNode {
            kind: DeviceKind::Fifo,
            ..node
        };
        assert!(device_matches(libc::S_IFIFO | 0o600, 0, &fifo));
    }
}
