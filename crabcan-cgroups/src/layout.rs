//! Which cgroup hierarchies a host has, what each one controls and where the caller sits in
//! it: pure parsers over /proc/self/mountinfo and /proc/self/cgroup, so every layout (pure
//! v2, hybrid, pure v1) is tested from recorded text.

use crate::host::{Cgroup2Mount, find_cgroup2_mount, own_cgroup_path};
use crabcan_errors::{Errcode, Result, SysContext};
use std::path::{Path, PathBuf};

/// How the host mounts its cgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Only the cgroup v2 hierarchy.
    Unified,
    /// cgroup v1 hierarchies for the controllers, plus a cgroup v2 mount beside them.
    Hybrid,
    /// Only cgroup v1 hierarchies.
    Legacy,
}

/// One mounted cgroup v1 hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Hierarchy {
    /// Where it is mounted ("/sys/fs/cgroup/memory").
    pub mount_point: PathBuf,
    /// Which cgroup of the hierarchy is at the mount point ("/" for all of it).
    pub root: String,
    /// The controllers bound to it ("cpu", "cpuacct"); never the named `name=systemd` ones.
    pub controllers: Vec<String>,
    /// The caller's cgroup in it, from /proc/self/cgroup ("/" when not listed).
    pub own: String,
}

/// The cgroup v2 hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V2Hierarchy {
    /// Where it is mounted ("/sys/fs/cgroup" or, hybrid, "/sys/fs/cgroup/unified").
    pub mount_point: PathBuf,
    /// Which cgroup of the hierarchy is at the mount point.
    pub root: String,
    /// The controllers its root offers (cgroup.controllers); empty until read.
    pub controllers: Vec<String>,
    /// The caller's cgroup in it ("0::" in /proc/self/cgroup).
    pub own: String,
}

/// The host's cgroup layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The v1 hierarchies with at least one controller, in mountinfo order.
    pub v1: Vec<V1Hierarchy>,
    /// The v2 hierarchy, if mounted.
    pub v2: Option<V2Hierarchy>,
}

/// Where a controller lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Where<'a> {
    /// In this v1 hierarchy.
    V1(&'a V1Hierarchy),
    /// In the v2 hierarchy.
    V2(&'a V2Hierarchy),
}

/// The controllers crabcan knows on cgroup v1, in the order directories are created.
pub const V1_CONTROLLERS: &[&str] = &[
    "cpuset",
    "cpu",
    "cpuacct",
    "memory",
    "pids",
    "devices",
    "freezer",
    "blkio",
    "hugetlb",
    "net_cls",
    "net_prio",
    "perf_event",
    "rdma",
    "misc",
];

impl Layout {
    /// Reads this process's mountinfo and cgroup files and the v2 root's controllers.
    pub fn detect() -> Result<Layout> {
        let read =
            |p: &Path| crate::cgroup::read_virtual(p).sys_ctx(|| format!("read {}", p.display()));
        let text = |p: &Path| {
            String::from_utf8(read(p)?)
                .map_err(|_| Errcode::setup(format!("read {}: the text is not UTF-8", p.display())))
        };
        // Mount points are any bytes; those of the cgroup hierarchies are what counts.
        let mountinfo = read(Path::new("/proc/self/mountinfo"))?;
        let cg = text(Path::new("/proc/self/cgroup"))?;
        let mut layout = Layout::from_mountinfo(&String::from_utf8_lossy(&mountinfo), &cg)?;
        if let Some(v2) = layout.v2.as_mut() {
            let text = text(&v2.mount_point.join("cgroup.controllers"))?;
            v2.controllers = text.split_whitespace().map(str::to_string).collect();
        }
        Ok(layout)
    }

    /// The layout described by the text of /proc/self/mountinfo and /proc/self/cgroup. The
    /// v2 controllers are left empty (they are in a file of the hierarchy, see
    /// [`Layout::detect`]).
    pub fn from_mountinfo(mountinfo: &str, proc_self_cgroup: &str) -> Result<Layout> {
        let mut v1: Vec<V1Hierarchy> = Vec::new();
        for line in mountinfo.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let mut r = right.split_whitespace();
            if r.next() != Some("cgroup") {
                continue;
            }
            let Some(opts) = r.nth(1) else { continue };
            let controllers: Vec<String> = opts
                .split(',')
                .filter(|o| V1_CONTROLLERS.contains(o))
                .map(str::to_string)
                .collect();
            if controllers.is_empty() {
                continue;
            }
            let fields: Vec<&str> = left.split_whitespace().collect();
            let (Some(root), Some(mp)) = (fields.get(3), fields.get(4)) else {
                continue;
            };
            // The same hierarchy mounted twice (a bind mount of it): the first one serves.
            if v1.iter().any(|h| h.controllers == controllers) {
                continue;
            }
            let own = own_v1(proc_self_cgroup, &controllers).unwrap_or_else(|| "/".into());
            v1.push(V1Hierarchy {
                mount_point: PathBuf::from(crate::host::unescape(mp)),
                root: crate::host::unescape(root),
                controllers,
                own,
            });
        }
        let v2 = match find_cgroup2_mount(mountinfo) {
            None => None,
            Some(Cgroup2Mount { mount_point, root }) => {
                let own = own_cgroup_path(proc_self_cgroup).ok_or_else(|| {
                    Errcode::setup(format!(
                        "a cgroup2 hierarchy is mounted on {} but /proc/self/cgroup has no 0::/ line",
                        mount_point.display()
                    ))
                })?;
                Some(V2Hierarchy {
                    mount_point,
                    root,
                    controllers: Vec::new(),
                    own,
                })
            }
        };
        if v1.is_empty() && v2.is_none() {
            return Err(Errcode::setup(
                "no cgroup hierarchy is mounted (no cgroup or cgroup2 line in /proc/self/mountinfo)",
            ));
        }
        Ok(Layout { v1, v2 })
    }

    /// Unified, hybrid or legacy.
    pub fn mode(&self) -> Mode {
        match (self.v1.is_empty(), self.v2.is_some()) {
            (true, _) => Mode::Unified,
            (false, true) => Mode::Hybrid,
            (false, false) => Mode::Legacy,
        }
    }

    /// Where `controller` lives: a v1 hierarchy first (on a hybrid host the v1 one is the
    /// one holding it), else v2 when its root offers it.
    pub fn controller(&self, controller: &str) -> Option<Where<'_>> {
        if let Some(h) = self.v1_of(controller) {
            return Some(Where::V1(h));
        }
        self.v2
            .as_ref()
            .filter(|h| h.controllers.iter().any(|c| c == controller))
            .map(Where::V2)
    }

    /// Whether any hierarchy offers `controller`.
    pub fn has(&self, controller: &str) -> bool {
        self.controller(controller).is_some()
    }

    /// The v1 hierarchy holding `controller`.
    pub fn v1_of(&self, controller: &str) -> Option<&V1Hierarchy> {
        self.v1
            .iter()
            .find(|h| h.controllers.iter().any(|c| c == controller))
    }

    /// One line for a debug log: the mode and each hierarchy with its controllers.
    pub fn describe(&self) -> String {
        let mut s = format!("cgroups {:?}:", self.mode()).to_lowercase();
        for h in &self.v1 {
            s.push_str(&format!(
                " v1 {} [{}]",
                h.mount_point.display(),
                h.controllers.join(",")
            ));
        }
        if let Some(h) = &self.v2 {
            s.push_str(&format!(
                " v2 {} [{}]",
                h.mount_point.display(),
                h.controllers.join(",")
            ));
        }
        s
    }
}

impl V1Hierarchy {
    /// The directory of the cgroup `path` (absolute in the hierarchy) under the mount.
    pub fn dir_of(&self, path: &str) -> Result<PathBuf> {
        dir_in(&self.mount_point, &self.root, path)
    }

    /// The caller's own cgroup directory.
    pub fn own_dir(&self) -> Result<PathBuf> {
        self.dir_of(&self.own)
    }

    /// A short name for messages ("cpu,cpuacct").
    pub fn name(&self) -> String {
        self.controllers.join(",")
    }
}

impl V2Hierarchy {
    /// The directory of the cgroup `path` (absolute in the hierarchy) under the mount.
    pub fn dir_of(&self, path: &str) -> Result<PathBuf> {
        dir_in(&self.mount_point, &self.root, path)
    }

    /// The caller's own cgroup directory.
    pub fn own_dir(&self) -> Result<PathBuf> {
        self.dir_of(&self.own)
    }
}

fn dir_in(mount_point: &Path, root: &str, path: &str) -> Result<PathBuf> {
    crate::host::dir_under(mount_point, root, path)
}

/// The caller's path in the v1 hierarchy holding exactly `controllers`.
fn own_v1(proc_cgroup: &str, controllers: &[String]) -> Option<String> {
    proc_cgroup.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, ctls, path) = (parts.next()?, parts.next()?, parts.next()?);
        (path.starts_with('/') && ctls.split(',').any(|l| controllers.iter().any(|c| c == l)))
            .then(|| path.to_string())
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// This project's development host as recorded (hybrid: every controller on v1 but
    /// hugetlb, which only the v2 mount has); one unrelated mount line left out and the
    /// session's memory cgroup name shortened.
    pub(crate) const HOST_MOUNTINFO: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw,size=12334460k,nr_inodes=3083615,mode=755
25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=24684084k
26 24 0:24 / /dev/pts rw,relatime - devpts devpts rw,mode=600,ptmxmode=000
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard,resv_strict,resuid=65534,resgid=65534
29 26 0:26 / /dev/pts rw,relatime - devpts devpts rw,mode=600,ptmxmode=000
30 25 0:27 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=24684084k
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    pub(crate) const HOST_CGROUP: &str = "\
9:name=systemd:/
8:pids:/
7:blkio:/
6:freezer:/
5:devices:/
4:memory:/session/10db
3:cpuset:/
2:cpuacct:/
1:cpu:/
0::/
";

    /// A pure v1 host as older distributions boot (Debian 10, CentOS 7 style): co-mounted
    /// cpu,cpuacct and net_cls,net_prio, no cgroup2 mount at all.
    pub(crate) const V1_MOUNTINFO: &str = "\
25 20 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,xattr,release_agent=/usr/lib/systemd/systemd-cgroups-agent,name=systemd
29 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,cpu,cpuacct
30 25 0:27 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,net_cls,net_prio
31 25 0:28 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,memory
32 25 0:29 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,pids
33 25 0:30 / /sys/fs/cgroup/cpuset rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,cpuset
34 25 0:31 / /sys/fs/cgroup/devices rw,nosuid,nodev,noexec,relatime shared:18 - cgroup cgroup rw,devices
35 25 0:32 / /sys/fs/cgroup/freezer rw,nosuid,nodev,noexec,relatime shared:19 - cgroup cgroup rw,freezer
36 25 0:33 / /sys/fs/cgroup/blkio rw,nosuid,nodev,noexec,relatime shared:20 - cgroup cgroup rw,blkio
37 25 0:34 / /sys/fs/cgroup/hugetlb rw,nosuid,nodev,noexec,relatime shared:21 - cgroup cgroup rw,hugetlb
38 25 0:35 / /sys/fs/cgroup/perf_event rw,nosuid,nodev,noexec,relatime shared:22 - cgroup cgroup rw,perf_event
";
    pub(crate) const V1_CGROUP: &str = "\
11:hugetlb:/
10:perf_event:/
9:blkio:/user.slice
8:freezer:/
7:devices:/user.slice
6:cpuset:/
5:pids:/user.slice/user-1000.slice/session-2.scope
4:memory:/user.slice
3:net_cls,net_prio:/
2:cpu,cpuacct:/user.slice
1:name=systemd:/user.slice/user-1000.slice/session-2.scope
";

    /// A pure v2 host (Debian 12 with systemd), from a login session.
    pub(crate) const V2_MOUNTINFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
24 22 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
26 24 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";
    pub(crate) const V2_CGROUP: &str = "0::/user.slice/user-1000.slice/session-3.scope\n";

    #[test]
    fn this_host_is_hybrid() {
        let l = Layout::from_mountinfo(HOST_MOUNTINFO, HOST_CGROUP).unwrap();
        assert_eq!(l.mode(), Mode::Hybrid);
        let names: Vec<String> = l.v1.iter().map(V1Hierarchy::name).collect();
        assert_eq!(
            names,
            [
                "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids"
            ]
        );
        let mem = l.v1_of("memory").unwrap();
        assert_eq!(mem.mount_point, Path::new("/sys/fs/cgroup/memory"));
        assert_eq!(mem.own, "/session/10db");
        assert_eq!(
            mem.own_dir().unwrap(),
            Path::new("/sys/fs/cgroup/memory/session/10db")
        );
        assert_eq!(l.v1_of("pids").unwrap().own, "/");
        let v2 = l.v2.as_ref().unwrap();
        assert_eq!(v2.mount_point, Path::new("/sys/fs/cgroup/unified"));
        assert_eq!(v2.own, "/");
        // Controllers of v2 come from its root's file: none known from the text alone.
        assert!(!l.has("hugetlb"));
        assert!(matches!(l.controller("memory"), Some(Where::V1(_))));
        assert_eq!(l.v1_of("net_cls"), None);
        assert_eq!(l.v1_of("systemd"), None);
        assert_eq!(l.v1_of("name=systemd"), None);
    }

    #[test]
    fn hybrid_with_hugetlb_on_v2_routes_it_there() {
        let mut l = Layout::from_mountinfo(HOST_MOUNTINFO, HOST_CGROUP).unwrap();
        l.v2.as_mut().unwrap().controllers = vec!["hugetlb".into()];
        assert!(matches!(l.controller("hugetlb"), Some(Where::V2(_))));
        assert!(matches!(l.controller("pids"), Some(Where::V1(_))));
        assert!(
            l.describe()
                .starts_with("cgroups hybrid: v1 /sys/fs/cgroup/cpu [cpu]")
        );
        assert!(
            l.describe()
                .ends_with("v2 /sys/fs/cgroup/unified [hugetlb]")
        );
    }

    #[test]
    fn pure_v1_with_co_mounted_controllers() {
        let l = Layout::from_mountinfo(V1_MOUNTINFO, V1_CGROUP).unwrap();
        assert_eq!(l.mode(), Mode::Legacy);
        assert_eq!(l.v2, None);
        let cpu = l.v1_of("cpuacct").unwrap();
        assert_eq!(cpu.controllers, ["cpu", "cpuacct"]);
        assert_eq!(cpu.mount_point, Path::new("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(cpu.own, "/user.slice");
        assert_eq!(l.v1_of("net_prio").unwrap().name(), "net_cls,net_prio");
        assert_eq!(
            l.v1_of("pids").unwrap().own_dir().unwrap(),
            Path::new("/sys/fs/cgroup/pids/user.slice/user-1000.slice/session-2.scope")
        );
        for c in [
            "hugetlb",
            "perf_event",
            "blkio",
            "freezer",
            "devices",
            "cpuset",
        ] {
            assert!(l.has(c), "{c}");
        }
        assert_eq!(l.v1.len(), 10);
    }

    #[test]
    fn pure_v2() {
        let mut l = Layout::from_mountinfo(V2_MOUNTINFO, V2_CGROUP).unwrap();
        assert_eq!(l.mode(), Mode::Unified);
        assert!(l.v1.is_empty());
        let v2 = l.v2.as_mut().unwrap();
        assert_eq!(v2.mount_point, Path::new("/sys/fs/cgroup"));
        assert_eq!(
            v2.own_dir().unwrap(),
            Path::new("/sys/fs/cgroup/user.slice/user-1000.slice/session-3.scope")
        );
        v2.controllers = vec!["cpu".into(), "memory".into(), "pids".into()];
        assert!(matches!(l.controller("memory"), Some(Where::V2(_))));
        assert!(!l.has("freezer"));
    }

    #[test]
    fn nothing_mounted_or_inconsistent() {
        let e = Layout::from_mountinfo("22 1 8:1 / / rw - ext4 /dev/sda1 rw\n", "0::/\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no cgroup hierarchy"), "{e}");
        let e = Layout::from_mountinfo(V2_MOUNTINFO, "4:memory:/\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("0::/"), "{e}");
        // A bind mount of a hierarchy elsewhere does not count twice.
        let twice = format!("{V1_MOUNTINFO}90 25 0:28 / /mnt/mem rw - cgroup cgroup rw,memory\n");
        let l = Layout::from_mountinfo(&twice, V1_CGROUP).unwrap();
        assert_eq!(l.v1.len(), 10);
    }

    proptest::proptest! {
        #[test]
        fn any_text_never_panics(m in "(.{0,40}\n){0,6}", c in "(.{0,20}\n){0,4}") {
            let _ = Layout::from_mountinfo(&m, &c);
        }
    }
}
