//! The `cgroup` mount type.
//!
//! On a host with cgroup v2 alone it is a `cgroup2` mount. On a v1 or hybrid host it is, as
//! runc does, a tmpfs holding one fresh mount per v1 hierarchy (named like the host's
//! `/sys/fs/cgroup` entries, with a symlink per co-mounted controller) and `unified` for
//! the v2 mount of a hybrid host. Every cgroup mount is made afresh, so the kernel roots it
//! at the cgroup namespace of the container: with its own cgroup namespace the container
//! sees its own cgroup as the root; without one, it sees the host's hierarchy (read-only
//! with `ro`). Fresh mounts rather than binds of the container's cgroup directories, so
//! the view follows the namespace the caller chose instead of a path this crate would have
//! to be told.

use crate::options::MountOptions;
use crate::sys;
use crabcan_errors::{Errcode, Result, SysContext};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::MsFlags;
use nix::sys::stat::Mode;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

/// One cgroup v1 hierarchy as the host mounts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// The directory name under the cgroup mount (`cpu,cpuacct`, `systemd`).
    pub name: String,
    /// The mount data selecting it (`cpu,cpuacct`, `none,name=systemd`).
    pub data: String,
    /// The controllers co-mounted in it (each gets a symlink when it differs from `name`).
    pub controllers: Vec<String>,
}

/// The cgroup filesystems of the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupLayout {
    /// cgroup v2 alone.
    Unified,
    /// v1 hierarchies, and a v2 mount beside them (`unified`) on a hybrid host.
    V1 {
        /// The hierarchies, in mount order.
        hierarchies: Vec<Hierarchy>,
        /// A v2 mount exists beside them.
        unified: bool,
    },
}

/// Super-block options of a v1 mount that select no hierarchy.
const NOT_CONTROLLERS: &[&str] = &[
    "rw",
    "ro",
    "xattr",
    "noprefix",
    "clone_children",
    "cpuset_v2_mode",
    "favordynmods",
    "none",
];

/// Reads the host's cgroup layout from `/proc/self/mountinfo` text.
pub fn layout(mountinfo: &str) -> CgroupLayout {
    let mut hierarchies: Vec<Hierarchy> = Vec::new();
    let mut v2_alone = false;
    let mut unified = false;
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut l = left.split(' ');
        let mount_point = l.nth(4).unwrap_or("");
        let mut r = right.split(' ');
        let (fstype, super_opts) = (r.next().unwrap_or(""), r.nth(1).unwrap_or(""));
        match fstype {
            "cgroup2" if mount_point == "/sys/fs/cgroup" => v2_alone = true,
            "cgroup2" => unified = true,
            "cgroup" => {
                let Some(name) = Path::new(mount_point)
                    .file_name()
                    .and_then(|n| n.to_str())
                    .filter(|n| !n.is_empty())
                else {
                    continue;
                };
                let mut controllers = Vec::new();
                let mut data = Vec::new();
                for o in super_opts.split(',') {
                    if NOT_CONTROLLERS.contains(&o) || o.starts_with("release_agent=") {
                        continue;
                    }
                    data.push(o.to_string());
                    if !o.starts_with("name=") {
                        controllers.push(o.to_string());
                    }
                }
                if data.is_empty() {
                    continue;
                }
                if controllers.is_empty() {
                    data.insert(0, "none".into());
                }
                let data = data.join(",");
                if hierarchies.iter().any(|h| h.data == data) {
                    continue;
                }
                hierarchies.push(Hierarchy {
                    name: name.to_string(),
                    data,
                    controllers,
                });
            }
            _ => {}
        }
    }
    if hierarchies.is_empty() && v2_alone {
        CgroupLayout::Unified
    } else {
        CgroupLayout::V1 {
            hierarchies,
            unified: unified || v2_alone,
        }
    }
}

/// The flags of every cgroup mount: never set-id, devices or programs; read-only with `ro`.
fn cgroup_flags(o: &MountOptions) -> MsFlags {
    let mut f = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    if o.read_only() {
        f |= MsFlags::MS_RDONLY;
    }
    f
}

/// Mounts the cgroup filesystems of `layout` on `at` (the mount point `target` inside the
/// container root `root`).
pub(crate) fn mount(
    root: BorrowedFd<'_>,
    target: &Path,
    at: BorrowedFd<'_>,
    layout: &CgroupLayout,
    o: &MountOptions,
) -> Result<()> {
    let flags = cgroup_flags(o);
    let on =
        |fd: BorrowedFd<'_>, src: &str, fstype: &str, flags, data: Option<&str>, name: &str| {
            nix::mount::mount(
                Some(src),
                sys::fd_path(fd).as_str(),
                Some(fstype),
                flags,
                data,
            )
            .sys_ctx(|| format!("mount {fstype} {name} on {}", target.display()))
        };
    let CgroupLayout::V1 {
        hierarchies,
        unified,
    } = layout
    else {
        return on(at, "cgroup2", "cgroup2", flags, None, "");
    };
    on(
        at,
        "tmpfs",
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=755,size=64k"),
        "(holding the hierarchies)",
    )?;
    let what = || format!("set up the cgroup mounts on {}", target.display());
    let tmpfs =
        sys::open_in_root(root, target, OFlag::O_PATH | OFlag::O_DIRECTORY).sys_ctx(what)?;
    let subdir = |name: &str| {
        match nix::sys::stat::mkdirat(tmpfs.as_fd(), name, Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(Errcode::sys(what(), e)),
        }
        sys::open_on_mount(
            tmpfs.as_fd(),
            Path::new(name),
            OFlag::O_PATH | OFlag::O_DIRECTORY,
        )
        .sys_ctx(what)
    };
    for h in hierarchies {
        let dir = subdir(&h.name)?;
        on(
            dir.as_fd(),
            "cgroup",
            "cgroup",
            flags,
            Some(&h.data),
            &h.name,
        )?;
        for c in h.controllers.iter().filter(|c| **c != h.name) {
            match nix::unistd::symlinkat(h.name.as_str(), tmpfs.as_fd(), c.as_str()) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(Errcode::sys(what(), e)),
            }
        }
    }
    if *unified {
        let dir = subdir("unified")?;
        on(dir.as_fd(), "cgroup2", "cgroup2", flags, None, "unified")?;
    }
    if o.read_only() {
        sys::mount_setattr(tmpfs.as_fd(), sys::ATTR_RDONLY, false).sys_ctx(what)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
25 1 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
26 25 0:24 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:8 - tmpfs tmpfs ro,mode=755
27 26 0:25 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
28 26 0:26 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,xattr,name=systemd
30 26 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,cpu,cpuacct
31 26 0:29 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,memory
32 26 0:30 / /sys/fs/cgroup/cpuset rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,cpuset,clone_children
90 40 0:29 /x /srv/again rw - cgroup cgroup rw,memory
";

    #[test]
    fn hybrid_host() {
        let CgroupLayout::V1 {
            hierarchies,
            unified,
        } = layout(HYBRID)
        else {
            panic!("not v1");
        };
        assert!(unified);
        let got: Vec<(&str, &str)> = hierarchies
            .iter()
            .map(|h| (h.name.as_str(), h.data.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("systemd", "none,name=systemd"),
                ("cpu,cpuacct", "cpu,cpuacct"),
                ("memory", "memory"),
                ("cpuset", "cpuset"),
            ]
        );
        assert_eq!(hierarchies[1].controllers, ["cpu", "cpuacct"]);
        assert!(hierarchies[0].controllers.is_empty());
    }

    #[test]
    fn unified_host() {
        let info = "27 1 0:25 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(layout(info), CgroupLayout::Unified);
        assert_eq!(
            layout("garbage\n\n1 2 3\n"),
            CgroupLayout::V1 {
                hierarchies: Vec::new(),
                unified: false
            }
        );
    }

    #[test]
    fn flags() {
        let ro = MountOptions::parse(&["ro".into()]).unwrap();
        assert!(cgroup_flags(&ro).contains(MsFlags::MS_RDONLY | MsFlags::MS_NOSUID));
        assert!(!cgroup_flags(&MountOptions::default()).contains(MsFlags::MS_RDONLY));
    }
}
