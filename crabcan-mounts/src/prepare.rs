//! Host-side preparation of a directory root: the mount points the plan needs that the
//! directory lacks are created before the container starts and removed after it ends.

use crate::plan::{MountPlan, Root, Step};
use crate::sys::{self, PointKind};
use crabcan_errors::{Errcode, Result, SysContext};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::unistd::UnlinkatFlags;
use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Mount points created in a directory root; [`Prepared::cleanup`] (or drop) removes them.
#[derive(Debug)]
pub struct Prepared {
    root: Option<OwnedFd>,
    created: Vec<(PathBuf, PointKind)>,
}

/// Creates, beneath a [`Root::Dir`], the mount points of `plan` that do not exist yet
/// (resolving every path inside the root, so a symlink in it cannot point the creation
/// elsewhere). A scratch root needs nothing: returns an empty [`Prepared`].
pub fn prepare(plan: &MountPlan) -> Result<Prepared> {
    prepare_announcing(plan, &mut |_| Ok(()))
}

/// [`prepare`], telling `announce` the path (inside the root) of each thing it is about to
/// make, before it exists: a caller that can be killed records it there, so that whoever
/// cleans up after the kill finds everything that may have been made. An error of
/// `announce` stops the preparation (what was made is removed) and is returned. An
/// announced path may end up not made (a dangling symlink is found in its place, and its
/// target made instead, announced too): a cleanup removes only empty directories and empty
/// regular files, never a symlink.
pub fn prepare_announcing(
    plan: &MountPlan,
    announce: &mut dyn FnMut(&Path) -> Result<()>,
) -> Result<Prepared> {
    prepare_in(plan, None, announce)
}

/// The container's directory root, opened as [`prepare`] opens it (no symlink on its path);
/// `None` for a scratch root. A caller that must act on the very directory prepare makes
/// its mount points in (a cleanup after a kill) opens it with this, keeps a copy of the
/// descriptor, and gives it to [`prepare_in`].
pub fn open_root(plan: &MountPlan) -> Result<Option<OwnedFd>> {
    crate::apply::open_root_dir(plan)
}

/// [`prepare_announcing`] in `root`, the directory root as [`open_root`] opened it (opened
/// here when `None`).
pub fn prepare_in(
    plan: &MountPlan,
    root: Option<OwnedFd>,
    announce: &mut dyn FnMut(&Path) -> Result<()>,
) -> Result<Prepared> {
    check_nested_binds(plan)?;
    let Root::Dir(dir) = &plan.root else {
        return Ok(Prepared {
            root: None,
            created: Vec::new(),
        });
    };
    let root = match root {
        Some(r) => r,
        None => crate::apply::open_root_dir(plan)?.ok_or_else(|| {
            Errcode::setup(format!(
                "cannot open the container's root {}",
                dir.display()
            ))
        })?,
    };
    let root_id = match nix::sys::stat::fstat(root.as_fd()) {
        Ok(st) => (st.st_dev, st.st_ino),
        Err(e) => {
            return Err(Errcode::sys(
                format!("inspect the root {}", dir.display()),
                e,
            ));
        }
    };
    let mut prepared = Prepared {
        root: None,
        created: Vec::new(),
    };
    // Targets mounted so far; a set so that checking a path's ancestors stays linear in
    // the number of mounts (a thousand binds must not cost a million comparisons).
    let mut mounted: HashSet<&Path> = HashSet::new();
    for step in &plan.steps {
        let Some((target, kind, fresh)) = mount_point(step) else {
            continue;
        };
        // Only mount points on the root directory itself: ones below an earlier mount
        // (/dev/null on the /dev tmpfs) are made inside the container.
        if !target.ancestors().any(|a| mounted.contains(a)) {
            let kind = match kind.of(plan) {
                Ok(k) => k,
                Err(e) => {
                    prepared.root = Some(root);
                    prepared.cleanup_quietly();
                    return Err(e);
                }
            };
            let exists = match check_target(root.as_fd(), root_id, target, fresh, dir) {
                Ok(exists) => exists,
                Err(e) => {
                    prepared.root = Some(root);
                    prepared.cleanup_quietly();
                    return Err(e);
                }
            };
            let mode = if kind == PointKind::Dir { 0o755 } else { 0o644 };
            // What the check found needs no second lookup.
            let mut refused = None;
            let r = if exists {
                Ok(())
            } else {
                // Binds are not mounted yet: everything here is the root directory's.
                let mut note = |p: &Path, k| prepared.created.push((p.to_path_buf(), k));
                let mut about = |_: std::os::fd::BorrowedFd<'_>, p: &Path| {
                    announce(p).map_err(|e| {
                        refused = Some(e);
                        Errno::ECANCELED
                    })
                };
                sys::ensure_in_root(root.as_fd(), target, kind, mode, &mut note, &mut about)
                    .map(drop)
            };
            if let Err(e) = r {
                prepared.root = Some(root);
                prepared.cleanup_quietly();
                if let Some(refused) = refused {
                    return Err(refused);
                }
                return Err(Errcode::sys(
                    format!(
                        "create mount point {} in {}",
                        target.display(),
                        dir.display()
                    ),
                    e,
                ));
            }
        }
        mounted.insert(target);
    }
    prepared.root = Some(root);
    Ok(prepared)
}

/// What a mount point is made as: a directory, or what a bind's source is (looked at only
/// for a point the root itself needs, not for one below an earlier mount).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    LikeSource(usize),
}

impl Kind {
    fn of(self, plan: &MountPlan) -> Result<PointKind> {
        Ok(match self {
            Kind::Dir => PointKind::Dir,
            Kind::LikeSource(index) if source(plan, index)?.path.is_dir() => PointKind::Dir,
            Kind::LikeSource(_) => PointKind::File,
        })
    }
}

/// The mount point a step needs: its path, kind, and whether symlinks on its path are
/// refused (the fresh `/proc`, `/sys` and `/dev` of the default layout, `proc` and `sysfs`
/// entries).
fn mount_point(step: &Step) -> Option<(&Path, Kind, bool)> {
    match step {
        Step::Fresh { target, .. } => Some((target.as_path(), Kind::Dir, true)),
        Step::Mount(e) => Some((
            e.destination.as_path(),
            Kind::Dir,
            matches!(e.fstype.as_str(), "proc" | "sysfs"),
        )),
        Step::Cgroup { target, .. } => Some((target.as_path(), Kind::Dir, false)),
        Step::Attach { index, target } | Step::Bind { index, target, .. } => {
            Some((target.as_path(), Kind::LikeSource(*index), false))
        }
        _ => None,
    }
}

/// Refuses, before anything is created, a mount point that an image symlink redirects:
/// any symlink on the path of a fresh filesystem's mount point (`/proc -> /`), and any
/// target that resolves to the root directory itself.
/// Whether `target` exists, refusing one that must not be mounted on.
fn check_target(
    root: std::os::fd::BorrowedFd<'_>,
    root_id: (u64, u64),
    target: &Path,
    fresh: bool,
    dir: &Path,
) -> Result<bool> {
    let opened = if fresh {
        sys::open_in_root_no_symlinks(root, target, OFlag::O_PATH)
    } else {
        sys::open_in_root(root, target, OFlag::O_PATH)
    };
    let at = match opened {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(false),
        Err(Errno::ELOOP) if fresh => {
            return Err(Errcode::setup(format!(
                "refusing to mount on {}: it is a symlink in {} (an image must not redirect \
                 /proc, /sys or /dev)",
                target.display(),
                dir.display()
            )));
        }
        Err(e) => {
            return Err(Errcode::sys(
                format!("open mount point {} in {}", target.display(), dir.display()),
                e,
            ));
        }
    };
    let st = nix::sys::stat::fstat(at.as_fd())
        .sys_ctx(|| format!("check mount point {}", target.display()))?;
    if (st.st_dev, st.st_ino) == root_id {
        return Err(Errcode::setup(format!(
            "refusing to mount on {}: it resolves to the root {} itself (a symlink in the image)",
            target.display(),
            dir.display()
        )));
    }
    Ok(true)
}

fn source(plan: &MountPlan, index: usize) -> Result<&crate::plan::Source> {
    plan.sources
        .get(index)
        .ok_or_else(|| Errcode::setup(format!("mount plan names a missing source #{index}")))
}

/// A bind below another bind (`-a /a:/data -a /b:/data/sub`) needs its mount point inside
/// the first bind's host directory; crabcan never creates anything there (it would stay in
/// the host's /a), so it must exist already.
fn check_nested_binds(plan: &MountPlan) -> Result<()> {
    // Every mount target so far, with the host directory behind it when it is a bind.
    let mut mounts: HashMap<&Path, Option<&Path>> = HashMap::new();
    for step in &plan.steps {
        let (target, host) = match step {
            Step::Attach { index, target } | Step::Bind { index, target, .. } => {
                (target.as_path(), Some(source(plan, *index)?))
            }
            Step::Mount(e) => (e.destination.as_path(), None),
            Step::Cgroup { target, .. } => (target.as_path(), None),
            Step::HostDir { index, path } => (path.as_path(), Some(source(plan, *index)?)),
            Step::Fresh { target, .. } => (target.as_path(), None),
            _ => continue,
        };
        let below = target
            .ancestors()
            .skip(1)
            .find_map(|a| mounts.get(a).map(|h| (a, *h)));
        if let Some((outer, Some(outer_src))) = below {
            let rel = target.strip_prefix(outer).unwrap_or(target);
            let inside = outer_src.join(rel);
            if std::fs::symlink_metadata(&inside).is_err() {
                return Err(Errcode::usage(format!(
                    "cannot bind-mount to {}: its mount point would have to be created as {} \
                     inside the bind of {}",
                    target.display(),
                    inside.display(),
                    outer_src.display()
                ))
                .with_hint(format!("create {} first", inside.display())));
            }
        }
        mounts.insert(target, host.map(|s| s.path.as_path()));
    }
    Ok(())
}

impl Prepared {
    /// The directory root as opened once for the whole run (symlinks refused): hand it to
    /// [`crate::handover`] so that every later step uses this very directory.
    pub fn root(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.root.as_ref().map(AsFd::as_fd)
    }

    /// The paths (inside the root) that were created, in creation order.
    pub fn created(&self) -> impl Iterator<Item = &Path> {
        self.created.iter().map(|(p, _)| p.as_path())
    }

    /// Removes what was created, deepest first; reports the first failure.
    pub fn cleanup(mut self) -> Result<()> {
        self.remove_all()
    }

    /// Whether anything was created (and so needs removing).
    pub fn is_empty(&self) -> bool {
        self.created.is_empty()
    }

    fn cleanup_quietly(&mut self) {
        let _ = self.remove_all();
    }

    fn remove_all(&mut self) -> Result<()> {
        let Some(root) = self.root.take() else {
            return Ok(());
        };
        let mut first = None;
        while let Some((path, kind)) = self.created.pop() {
            if let Err(e) = remove_in_root(root.as_fd(), &path, kind) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        self.cleanup_quietly();
    }
}

fn remove_in_root(root: std::os::fd::BorrowedFd<'_>, path: &Path, kind: PointKind) -> Result<()> {
    let what = || format!("remove mount point {} it created", path.display());
    let parent = path.parent().unwrap_or(Path::new("/"));
    let name = path.file_name().ok_or(Errno::EINVAL).sys_ctx(what)?;
    let pfd = match sys::open_in_root(root, parent, OFlag::O_PATH | OFlag::O_DIRECTORY) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(Errcode::sys(what(), e)),
    };
    let flag = match kind {
        PointKind::Dir => UnlinkatFlags::RemoveDir,
        PointKind::File => {
            // Only the empty file it made: what the container (or anyone) put in its place
            // since (a file with data, a symlink, a device node) is not crabcan's to remove.
            match nix::sys::stat::fstatat(
                pfd.as_fd(),
                name,
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            ) {
                Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFREG && st.st_size == 0 => {}
                Ok(_) | Err(Errno::ENOENT) => return Ok(()),
                Err(e) => return Err(Errcode::sys(what(), e)),
            }
            UnlinkatFlags::NoRemoveDir
        }
    };
    match nix::unistd::unlinkat(pfd.as_fd(), name, flag) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(Errcode::sys(what(), e)),
    }
}
