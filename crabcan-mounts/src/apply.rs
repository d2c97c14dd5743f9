//! Walks a [`MountPlan`] in the container's own mount namespace and makes the syscalls.

use crate::plan::{Fs, MountPlan, Step};
use crate::sys::{self, Kind};
use crabcan_errors::{Errcode, Result, SysContext};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags};
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::stat::{Mode, SFlag};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Host directories a scratch root's tmpfs may be mounted on: any existing one will do,
/// since every host path the container needs was cloned before it is mounted.
const SCRATCH_STAGING: &[&str] = &["/tmp", "/mnt", "/run", "/var/tmp", "/opt", "/srv", "/home"];

/// Size cap of the tmpfs mounts crabcan makes for `/dev`, `/dev/shm` and a scratch root.
const DEV_TMPFS_OPTS: &str = "mode=755,size=65536k";
const SHM_TMPFS_OPTS: &str = "mode=1777,size=65536k";
const SCRATCH_TMPFS_OPTS: &str = "mode=755";

enum Cloned {
    Missing,
    Symlink(PathBuf),
    Tree { fd: OwnedFd, is_dir: bool },
}

struct State<'p> {
    plan: &'p MountPlan,
    clones: Vec<Option<Cloned>>,
    root: Option<OwnedFd>,
}

/// Applies `plan`: must run in a process with its own mount namespace (and, for the
/// `/proc` and `/sys` mounts, its own PID and network namespaces). Ends with the process's
/// root and working directory at the new root; the host's root is detached.
pub fn apply(plan: &MountPlan) -> Result<()> {
    // Modes in the plan are meant literally (1777 for /tmp); the caller's umask must not
    // change them. The child is single-threaded, so this is safe to flip and restore.
    let old_umask = nix::sys::stat::umask(Mode::empty());
    let nofile = raise_nofile(plan.sources.len() as u64)?;
    let mut st = State {
        plan,
        clones: (0..plan.sources.len()).map(|_| None).collect(),
        root: None,
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
                let cloned = clone_source(&src.path, src.recursive, src.read_only, src.optional)?;
                if let Some(slot) = self.clones.get_mut(*index) {
                    *slot = Some(cloned);
                }
                Ok(())
            }
            Step::RootFromDir { dir, read_only } => {
                let what = || format!("bind {} as the container's root", dir.display());
                let tree = sys::open_tree(dir, true, true).sys_ctx(what)?;
                if *read_only {
                    // Recursive, so that mounts below the root directory are read-only too.
                    sys::mount_setattr(tree.as_fd(), sys::ATTR_RDONLY, true)
                        .sys_ctx(|| "make the container's root read-only")?;
                }
                let at = open_dir(dir).sys_ctx(what)?;
                sys::move_mount(tree.as_fd(), at.as_fd()).sys_ctx(what)?;
                self.root = Some(open_dir(dir).sys_ctx(what)?);
                Ok(())
            }
            Step::RootScratch => {
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
                    Some(SCRATCH_TMPFS_OPTS),
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
                    Cloned::Tree { fd, is_dir } => self.attach(fd, is_dir, &source, target),
                    _ => Err(Errcode::setup(format!(
                        "cannot bind-mount {}: it vanished",
                        source.display()
                    ))),
                }
            }
            Step::Fresh { fs, target, gid } => self.fresh(*fs, target, *gid),
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
        sys::move_mount(tree.as_fd(), at.as_fd())
            .sys_ctx(|| format!("bind-mount {} to {}", source.display(), target.display()))
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
        let at = self.ensure(target, Kind::Dir, 0o755)?;
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
        let at = match sys::open_in_root(self.root()?, path, OFlag::O_PATH) {
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
            sys::move_mount(null.as_fd(), at.as_fd()).sys_ctx(what)
        }
    }

    fn read_only(&self, path: &Path) -> Result<()> {
        let what = || format!("make {} read-only", path.display());
        let at = match sys::open_in_root(self.root()?, path, OFlag::O_PATH) {
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

fn clone_source(path: &Path, recursive: bool, read_only: bool, optional: bool) -> Result<Cloned> {
    let what = || format!("bind-mount {}", path.display());
    if optional {
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
    let fd = sys::open_tree(path, recursive, true).sys_ctx(what)?;
    let st = nix::sys::stat::fstat(fd.as_fd()).sys_ctx(what)?;
    let is_dir = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
    if read_only {
        sys::mount_setattr(fd.as_fd(), sys::ATTR_RDONLY, recursive)
            .sys_ctx(|| format!("make the bind of {} read-only", path.display()))?;
    }
    Ok(Cloned::Tree { fd, is_dir })
}
