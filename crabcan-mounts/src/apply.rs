//! Walks a [`MountPlan`] in the container's own mount namespace and makes the syscalls.

use crate::plan::{Fs, MountPlan, Root, Step};
use crate::sys::{self, Kind};
use crabcan_errors::{Errcode, Result, SysContext};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags};
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::stat::{Mode, SFlag};
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
    /// Idmapped clones made by the parent, by source index.
    given: Vec<Option<OwnedFd>>,
    /// The idmapped root made by the parent.
    given_root: Option<OwnedFd>,
    /// The directory root as opened once by the parent.
    pinned_root: Option<OwnedFd>,
    /// The roots of the fresh `/proc` and `/sys` (or the bound host `/sys`) by mount point.
    bases: Vec<(&'static str, OwnedFd)>,
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
            .with_hint("give the path without symlinks (realpath), or run with --userns host"),
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
                    "its filesystem cannot be idmapped; --userns host runs without \
                     an id map (container root is then host root)",
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
        given,
        given_root,
        pinned_root,
        bases: Vec::new(),
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

/// Every source is held open as a detached mount until it is attached; with many `--add`
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

impl<'p> State<'p> {
    fn root(&self) -> Result<std::os::fd::BorrowedFd<'_>> {
        self.root
            .as_ref()
            .map(|f| f.as_fd())
            .ok_or_else(|| Errcode::setup("mount plan uses the root before setting it up"))
    }

    fn ensure(&self, path: &Path, kind: Kind, mode: u32) -> Result<OwnedFd> {
        sys::ensure_in_root(self.root()?, path, kind, mode, &mut |_, _| {})
            .sys_ctx(|| format!("create mount point {}", path.display()))
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
        match step {
            Step::MakePrivate => nix::mount::mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .sys_ctx(|| "make / recursively private"),
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
                self.root = Some(tree);
                Ok(())
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
                self.root = Some(
                    open_dir(staging)
                        .sys_ctx(|| format!("open the scratch root at {}", staging.display()))?,
                );
                Ok(())
            }
            Step::Dir { path, mode } => self.ensure(path, Kind::Dir, *mode).map(drop),
            Step::Symlink { path, target } => self.symlink(path, target),
            Step::HostDir { index, path } => match self.take_clone(*index)? {
                Cloned::Missing => Ok(()),
                Cloned::Symlink(target) => self.symlink(path, &target),
                Cloned::Tree { fd, is_dir } => self.attach(fd, is_dir, path, path),
            },
            Step::Attach { index, target } => {
                let source = self.source(*index)?.path.clone();
                match self.take_clone(*index)? {
                    Cloned::Tree { fd, is_dir } => {
                        self.attach(fd, is_dir, &source, target)?;
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
        let pfd = self.ensure(parent, Kind::Dir, 0o755)?;
        match nix::unistd::symlinkat(target, pfd.as_fd(), name) {
            Ok(()) | Err(Errno::EEXIST) => Ok(()),
            Err(e) => Err(Errcode::sys(what(), e)),
        }
    }

    fn attach(&self, tree: OwnedFd, is_dir: bool, source: &Path, target: &Path) -> Result<()> {
        let kind = if is_dir { Kind::Dir } else { Kind::File };
        let at = self.ensure(target, kind, if is_dir { 0o755 } else { 0o644 })?;
        self.refuse_root(at.as_fd(), target)?;
        sys::move_mount(tree.as_fd(), at.as_fd())
            .sys_ctx(|| format!("bind-mount {} to {}", source.display(), target.display()))
    }

    /// A symlink in the image may lead a mount point anywhere inside the root, but never to
    /// the root itself: a mount there would cover the whole container (and `/proc` there
    /// would be reachable at `/..` after `pivot_root`).
    fn refuse_root(&self, at: std::os::fd::BorrowedFd<'_>, target: &Path) -> Result<()> {
        let what = || format!("check mount point {}", target.display());
        if sys::same_inode(at, self.root()?).sys_ctx(what)? {
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
                drop(self.ensure(target, Kind::Dir, 0o755)?);
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
        use MsFlags as M;
        let devpts_opts;
        let (source, fstype, flags, data) = match fs {
            Fs::Proc => (
                "proc",
                "proc",
                M::MS_NOSUID | M::MS_NODEV | M::MS_NOEXEC,
                None,
            ),
            Fs::Sysfs => (
                "sysfs",
                "sysfs",
                M::MS_RDONLY | M::MS_NOSUID | M::MS_NODEV | M::MS_NOEXEC,
                None,
            ),
            Fs::DevTmpfs => (
                "tmpfs",
                "tmpfs",
                M::MS_NOSUID | M::MS_NOEXEC | M::MS_STRICTATIME,
                Some(DEV_TMPFS_OPTS),
            ),
            Fs::Devpts => {
                devpts_opts = match gid {
                    Some(g) => format!("newinstance,ptmxmode=0666,mode=0620,gid={g}"),
                    None => "newinstance,ptmxmode=0666,mode=0620".to_string(),
                };
                (
                    "devpts",
                    "devpts",
                    M::MS_NOSUID | M::MS_NOEXEC,
                    Some(devpts_opts.as_str()),
                )
            }
            Fs::Shm => (
                "shm",
                "tmpfs",
                M::MS_NOSUID | M::MS_NODEV | M::MS_NOEXEC,
                Some(SHM_TMPFS_OPTS),
            ),
        };
        let at = self.ensure_no_symlinks(target)?;
        nix::mount::mount(
            Some(source),
            sys::fd_path(at.as_fd()).as_str(),
            Some(fstype),
            flags,
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
        })
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

fn tree(fd: OwnedFd, path: &Path) -> Result<Cloned> {
    let st =
        nix::sys::stat::fstat(fd.as_fd()).sys_ctx(|| format!("bind-mount {}", path.display()))?;
    let is_dir = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
    Ok(Cloned::Tree { fd, is_dir })
}
